/**
 * @module
 * Signed embed URLs: images a static page can put in `<img src>` without holding a secret.
 *
 * `mintEmbed` turns a POST /v1/embeds body into `/v1/embeds/<payload>.<mac>.png`: the payload is
 * the canonical POST /v1/images body (defaults filled in, seed fixed, one image), the key id, an
 * optional expiry and allowed origins; the MAC is HMAC-SHA256 with the key's embed secret.
 * `openEmbed` checks a requested token in this order: well-formed, known key, not revoked
 * (KV record), MAC (constant time), not revoked (Durable Object), not expired, origin allowed.
 * `embedImage` then serves it through `createImages`, the same path (cache, single flight,
 * quota of the embedding key) as POST /v1/images.
 *
 * Formats and widths are not signed: the URL's extension (`.webp`, `.jpg`) and `?w=` / `?q=` pick
 * a variant of the one image the payload names, as the permanent URL offers every variant to
 * anyone (`src/images/variants.ts`). Signing them would only multiply the URLs a page needs for
 * `srcset`, and each costs one encode, cached, never a generation.
 *
 * @example
 * const minted = await mintEmbed({ engine }, key, body, 'https://tti.example.com')
 * // <img src="https://tti.example.com/v1/embeds/eyJ2Ijox….Qm9n….png">
 */
import * as z from 'zod'
import type { StoredImage } from '../cache/image-store'
import { createImages, type CreateImagesDeps } from '../images/create-images'
import { OUTPUT_FORMATS, variantQuery, type Variant } from '../images/formats'
import type { PictureDeps } from '../images/pictures'
import { readRequestPictures } from '../images/request-pictures'
import { resolveRequest, type RequestPictures } from '../images/validate'
import { outputVariant } from '../images/variants'
import { findKey, type ApiKeyRecord, type KeyDeps, type KeyState } from '../keys/api-keys'
import { ProblemError, throwFieldErrors } from '../problem'
import { pictureHtml, escapeHtml } from './picture'
import type { EmbedRequestBody } from './schema'
import {
  decodeToken,
  EMBED_TOKEN_VERSION,
  MAX_TOKEN_LENGTH,
  signToken,
  verifySignature,
  type EmbedPayload,
} from './token'

/** Path prefix of embed URLs (where `embedRoutes` is mounted). */
export const EMBED_PATH = '/v1/embeds/'

/**
 * Longest `max-age` of an embed response. The bytes behind a URL never change, but whether the
 * URL is still honoured does (key revocation), so caches must come back within a day.
 */
export const EMBED_MAX_AGE_SECONDS = 86_400

/** The answer of POST /v1/embeds. */
export interface MintedEmbed {
  /** The URL to put in `<img src>`. */
  url: string
  /** A ready-to-paste `<img>` element. */
  html: string
  /** A ready-to-paste `<picture>`: WebP `srcset` widths, the `output_format` as fallback. */
  picture: string
  /** The key whose quota pays for generating the image on first view. */
  key_id: string
  /** The canonical parameters the URL names (what POST /v1/images would take). */
  params: Record<string, unknown>
  /** When the URL stops working (ISO 8601), or null. */
  expires_at: string | null
  /** Pages allowed to show it, or null for any. */
  origins: string[] | null
}

/** Mints a signed embed URL on `origin`; validates the parameters against the model (422). */
export async function mintEmbed(
  deps: Pick<CreateImagesDeps, 'engine'> & { now?: number; pictures?: PictureDeps },
  key: ApiKeyRecord,
  body: EmbedRequestBody,
  origin: string,
): Promise<MintedEmbed> {
  // Keys with the `embed` scope are all created with a secret; only revocation removes it.
  if (!key.embed_secret) throw new Error(`key ${key.id} has no embed secret`)
  const { expires_in, origins, ...request } = body
  // Pictures are named by hash only (the schema allows nothing else); reading them here checks
  // that they exist and fit the model before a URL is signed.
  const { fields, pictures } = deps.pictures
    ? await readRequestPictures(request, deps.pictures)
    : { fields: request, pictures: {} }
  const params = canonicalParams(fields as Record<string, unknown>, deps.engine, pictures)
  const exp =
    expires_in === undefined ? undefined : Math.floor((deps.now ?? Date.now()) / 1000) + expires_in
  const o = origins ? [...new Set(origins)].sort() : undefined
  const payload: EmbedPayload = {
    v: EMBED_TOKEN_VERSION,
    k: key.id,
    p: params,
    ...(exp === undefined ? {} : { exp }),
    ...(o ? { o } : {}),
  }
  const token = await signToken(key.embed_secret, payload)
  // Never mint what the GET route would refuse to open.
  if (token.length > MAX_TOKEN_LENGTH)
    throwFieldErrors([
      {
        field: 'prompt',
        detail: `makes an embed token of ${token.length} characters; the limit is ${MAX_TOKEN_LENGTH} (shorten the prompt or the negative prompt)`,
      },
    ])
  const output = outputVariant(request.output_format, request.output_compression).variant
  const urlOf = (v: Variant) =>
    new URL(`${EMBED_PATH}${token}.${OUTPUT_FORMATS[v.format].extension}${variantQuery(v)}`, origin)
      .href
  const url = urlOf(output)
  const [width, height] = [Number(params.width), Number(params.height)]
  const alt = String(params.prompt)
  return {
    url,
    html: `<img src="${escapeHtml(url)}" width="${width}" height="${height}" alt="${escapeHtml(alt)}">`,
    picture: pictureHtml({
      url: urlOf,
      width,
      height,
      alt,
      fallback: output.format,
      quality: request.output_compression,
    }),
    key_id: key.id,
    params,
    expires_at: exp === undefined ? null : new Date(exp * 1000).toISOString(),
    origins: o ?? null,
  }
}

/**
 * The canonical parameters of a one-image request: every field resolved (model defaults filled
 * in, scheduler spelled as the model lists it) in a fixed order, so equal requests give equal
 * payloads and the URL keeps naming the same image if a default changes later.
 */
export function canonicalParams(
  request: Record<string, unknown>,
  engine: CreateImagesDeps['engine'],
  pictures: RequestPictures = {},
): Record<string, unknown> {
  const { model, req } = resolveRequest(request, engine, pictures)
  const scheduler = model.schedulers.includes(req.scheduler)
    ? req.scheduler
    : req.scheduler.toLowerCase()
  return {
    prompt: req.prompt,
    ...(req.negativePrompt ? { negative_prompt: req.negativePrompt } : {}),
    seed: req.seed,
    steps: req.steps,
    guidance_scale: req.guidanceScale,
    width: req.width,
    height: req.height,
    scheduler,
    model: req.model,
    ...(req.truncate ? { truncate: true } : {}),
    ...req.options,
    ...Object.fromEntries(Object.entries(pictures).map(([field, p]) => [field, p.sha256])),
  }
}

/** What a request tells about the page asking: its `Origin` and `Referer` headers. */
export interface EmbedViewer {
  origin?: string | null
  referer?: string | null
}

/** A verified embed: the signing key, the payload and the CORS answer for this viewer. */
export interface OpenedEmbed {
  key: ApiKeyRecord
  payload: EmbedPayload
  /** `Access-Control-Allow-Origin` for this request: `*` when unrestricted, else the origin. */
  allowOrigin: string | null
  /** Seconds until the URL expires, when it has an expiry. */
  expiresIn?: number
  /** The key's revocation flag and quota bucket, read in one round trip (`KeyGuard.check`). */
  state: KeyState
}

/** The signed payload's shape (checked after the MAC, so a mismatch is our own bug or a v2). */
const SignedPayload = z.strictObject({
  v: z.literal(EMBED_TOKEN_VERSION),
  k: z.string(),
  p: z.record(z.string(), z.unknown()),
  exp: z.number().int().optional(),
  o: z.array(z.string()).min(1).optional(),
})

/**
 * Verifies an embed token for a viewer. Throws 403 `embed-signature-invalid` (malformed,
 * tampered, wrongly signed or unknown key), 403 `key-revoked`, 410 `embed-expired` and 403
 * `embed-origin-not-allowed`. When the URL restricts origins, a request with neither `Origin`
 * nor `Referer` is refused: otherwise any site could show it with `referrerpolicy=no-referrer`.
 */
export async function openEmbed(
  deps: KeyDeps & { now?: number },
  token: string,
  viewer: EmbedViewer,
): Promise<OpenedEmbed> {
  const decoded = decodeToken(token)
  const claimed = (decoded?.payload as { k?: unknown } | undefined)?.k
  const record = typeof claimed === 'string' ? await findKey(deps, claimed) : null
  // The MAC first: only a genuine URL learns anything about its key. A revoked key's secret is
  // deleted, so its URLs are answered like forged ones, and a key id alone tells nothing.
  if (!decoded || !record?.embed_secret) throw invalidSignature()
  if (!(await verifySignature(record.embed_secret, decoded))) throw invalidSignature()
  if (record.revoked_at) throw new ProblemError('key-revoked', NO_STORE)
  const parsed = SignedPayload.safeParse(decoded.payload)
  if (!parsed.success || parsed.data.k !== record.id) throw invalidSignature()
  const payload = parsed.data as EmbedPayload
  // The KV record may lag a revocation; the key's Durable Object never does. Its quota comes
  // with the answer, so a view that hits the cache needs no second call.
  const state = await deps.guard(record.id).check()
  if (state.revoked) throw new ProblemError('key-revoked', NO_STORE)
  if (!record.scopes.includes('embed')) {
    throw new ProblemError('insufficient-scope', {
      ...NO_STORE,
      detail: 'the key that signed this URL lacks the "embed" scope',
    })
  }

  const now = Math.floor((deps.now ?? Date.now()) / 1000)
  if (payload.exp !== undefined && now >= payload.exp) {
    throw new ProblemError('embed-expired', {
      ...NO_STORE,
      detail: `the URL expired at ${new Date(payload.exp * 1000).toISOString()}`,
      extensions: { expired_at: new Date(payload.exp * 1000).toISOString() },
    })
  }
  const expiresIn = payload.exp === undefined ? undefined : payload.exp - now
  if (!payload.o) return { key: record, payload, allowOrigin: '*', expiresIn, state }

  const page = viewerOrigin(viewer)
  if (!page || !payload.o.includes(page)) {
    throw new ProblemError('embed-origin-not-allowed', {
      ...NO_STORE,
      detail: page
        ? `${page} is not among the origins this URL allows`
        : 'this URL allows only some origins and the request carries neither Origin nor Referer',
    })
  }
  // CORS answers the Origin header only; a Referer match allows the <img>, which needs no CORS.
  const origin = viewer.origin && payload.o.includes(viewer.origin) ? viewer.origin : null
  return { key: record, payload, allowOrigin: origin, expiresIn, state }
}

/** The requesting page's origin: `Origin` when sent (not `null`), else the `Referer`'s. */
export function viewerOrigin(viewer: EmbedViewer): string | null {
  if (viewer.origin && viewer.origin !== 'null') return viewer.origin
  if (!viewer.referer) return null
  try {
    const origin = new URL(viewer.referer).origin
    return origin === 'null' ? null : origin
  } catch {
    return null
  }
}

/** What serving an embed needs: `createImages`' dependencies and a reader of stored bytes. */
export interface EmbedImageDeps extends CreateImagesDeps {
  /**
   * The image in the URL's format as a response body (Cache API, then R2), from `original`, the
   * PNG, when a fresh generation holds it in memory; null when missing.
   */
  read: (sha256: string, original?: Uint8Array) => Promise<ReadableStream | Uint8Array | null>
}

/** The image an embed names, generated on the first view (charged to the embedding key). */
export interface EmbedImage {
  image: StoredImage
  /** The bytes in the URL's format; null when `fresh` said the client has them (a 304). */
  body: ReadableStream | Uint8Array | null
  cached: boolean
  requestKey: string
}

/** Serves a verified embed through `createImages`: a cache hit costs nothing, a miss one image. */
export async function embedImage(
  deps: EmbedImageDeps,
  opened: OpenedEmbed,
  fresh: (sha256: string) => boolean,
): Promise<EmbedImage> {
  const result = await createImages(deps, opened.payload.p, { singleImage: true })
  const [image] = result.entry.images
  const common = { image, cached: result.cached, requestKey: result.requestKey }
  if (fresh(image.sha256)) return { ...common, body: null }
  const body = await deps.read(image.sha256, result.bytes?.[0])
  if (!body) throw new Error(`indexed image ${image.sha256} is missing from R2`)
  return { ...common, body }
}

/**
 * `Cache-Control` of an embed response: shared caches may keep an unrestricted URL, but a
 * response that depended on the page's origin is private (browsers partition their caches by
 * site); never past the expiry, nor past `EMBED_MAX_AGE_SECONDS`.
 */
export function embedCacheControl(opened: OpenedEmbed): string {
  const maxAge = Math.min(EMBED_MAX_AGE_SECONDS, opened.expiresIn ?? Infinity)
  return `${opened.payload.o ? 'private' : 'public'}, max-age=${maxAge}`
}

/** Refusals depend on time, revocation and the page, so no cache may keep them. */
const NO_STORE = { headers: { 'Cache-Control': 'no-store' } } as const

function invalidSignature(): ProblemError {
  return new ProblemError('embed-signature-invalid', {
    ...NO_STORE,
    detail: 'the URL was altered or not signed by an API key of this deployment',
  })
}
