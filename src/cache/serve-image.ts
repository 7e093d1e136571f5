/**
 * @module
 * Serving `GET /v1/images/{sha256}.png` and its variants (`.webp`, `.jpg`, `?w=`, `?q=`; see
 * `src/images/variants.ts`): the isolate's copy of recent bytes (`./hot-images`), then the Cache
 * API (optional accelerator), R2 behind them. The
 * original is served as stored; a variant is encoded from it on a miss and cached under its
 * canonical URL, so it is encoded once per cache (and once per isolate for concurrent misses).
 * Content-addressed, so every response is immutable.
 */
import { imagePath, ORIGINAL, OUTPUT_FORMATS, isOriginal, type Variant } from '../images/formats'
import { encodeVariant, variantTag } from '../images/variants'
import { HOT_ENTRY_BYTES, type HotImages } from './hot-images'
import { getImage, IMMUTABLE, type ImageStoreDeps } from './image-store'

/** The permanent URL path of an image or a variant (defined with the format table). */
export { imagePath }

/** Headers every image response carries: the original's, or a variant's (its own ETag). */
export function imageHeaders(sha256: string, variant: Variant = ORIGINAL): Record<string, string> {
  return {
    'Content-Type': OUTPUT_FORMATS[variant.format].contentType,
    ETag: `"${variantTag(sha256, variant)}"`,
    'Cache-Control': IMMUTABLE,
  }
}

/**
 * Whether an `If-None-Match` header matches a strong ETag whose value is `tag` (`*`, weak forms
 * too): the original's sha256, or a variant's `variantTag`.
 */
export function matchesEtag(ifNoneMatch: string | undefined, tag: string): boolean {
  if (!ifNoneMatch) return false
  return ifNoneMatch
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === '*' || t === `"${tag}"`)
}

/** What serving needs: the bucket, the Cache API when the runtime has one, the isolate's copy. */
export type ServeImageDeps = Pick<ImageStoreDeps, 'images'> & {
  cache?: Pick<Cache, 'match' | 'put'>
  /** Recently served bytes by path (`./hot-images`), looked at before the Cache API. */
  hot?: Pick<HotImages, 'get' | 'set'>
}

/**
 * Returns the image's response, or null when no such image exists. A Cache API miss reads R2
 * and fills the cache through `defer` (the caller's `waitUntil`).
 */
export async function serveImage(
  deps: ServeImageDeps,
  sha256: string,
  cacheUrl: string,
  defer: (p: Promise<unknown>) => void,
): Promise<Response | null> {
  const path = imagePath(sha256)
  const hot = deps.hot?.get(path)
  if (hot) return bytesResponse(hot, imageHeaders(sha256))
  const cached = await deps.cache?.match(cacheUrl)
  if (cached) return keepHot(deps, path, cached)
  const obj = await getImage(deps, sha256)
  if (!obj) return null
  const res = new Response(obj.body, {
    headers: { ...imageHeaders(sha256), 'Content-Length': String(obj.size) },
  })
  if (deps.cache) defer(deps.cache.put(cacheUrl, res.clone()))
  return keepHot(deps, path, res)
}

function bytesResponse(bytes: Uint8Array, headers: HeadersInit): Response {
  return new Response(bytes as Uint8Array<ArrayBuffer>, { headers })
}

/** Answers `res`, keeping a copy of its bytes in the isolate when it is small enough. */
async function keepHot(deps: ServeImageDeps, path: string, res: Response): Promise<Response> {
  const length = Number(res.headers.get('content-length') ?? NaN)
  if (!deps.hot || !(length <= HOT_ENTRY_BYTES)) return res
  const bytes = new Uint8Array(await res.arrayBuffer())
  deps.hot.set(path, bytes)
  return bytesResponse(bytes, res.headers)
}

/** Encodes in flight in this isolate, by cache URL: concurrent misses share one encode. */
const encoding = new Map<string, Promise<Uint8Array | null>>()

/**
 * Returns a variant's response (the original's for `ORIGINAL`), or null when no such image
 * exists. The Cache API is keyed by the variant's canonical URL on `origin`; on a miss the
 * variant is encoded from `original` when the caller holds the PNG bytes (a fresh generation),
 * else from R2, and cached through `defer`. Throws a 422 naming `w` for a width above the
 * image's.
 */
export async function serveVariant(
  deps: ServeImageDeps,
  sha256: string,
  variant: Variant,
  origin: string,
  defer: (p: Promise<unknown>) => void,
  original?: Uint8Array,
): Promise<Response | null> {
  const path = imagePath(sha256, variant)
  const cacheUrl = new URL(path, origin).href
  if (isOriginal(variant)) {
    if (!original) return serveImage(deps, sha256, cacheUrl, defer)
    return new Response(original as Uint8Array<ArrayBuffer>, { headers: imageHeaders(sha256) })
  }
  const hot = deps.hot?.get(path)
  if (hot) return bytesResponse(hot, imageHeaders(sha256, variant))
  const cached = await deps.cache?.match(cacheUrl)
  if (cached) return keepHot(deps, path, cached)
  let pending = encoding.get(cacheUrl)
  if (!pending) {
    pending = (async () => {
      const stored = original ? undefined : await getImage(deps, sha256)
      const png = original ?? (stored ? new Uint8Array(await stored.arrayBuffer()) : null)
      return png ? (await encodeVariant(png, variant)).bytes : null
    })()
    encoding.set(cacheUrl, pending)
    void pending.finally(() => encoding.delete(cacheUrl)).catch(() => {})
  }
  const bytes = await pending
  if (!bytes) return null
  const res = new Response(bytes as Uint8Array<ArrayBuffer>, {
    headers: imageHeaders(sha256, variant),
  })
  if (deps.cache) defer(deps.cache.put(cacheUrl, res.clone()))
  deps.hot?.set(path, bytes)
  return res
}
