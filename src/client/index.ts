/**
 * @module
 * A small typed client for the edge-tti API. Runtime-neutral: it needs only `fetch`, so it runs
 * in Node ≥ 18, Deno, browsers and Workers. Every non-2xx answer (RFC 9457 problem+json) becomes
 * a `TtiApiError` carrying the problem's status, stable `type` and `detail`.
 *
 * @example
 * const tti = new TtiClient({ baseUrl: 'https://tti.example.com', apiKey: 'tti_…' })
 * const { images } = await tti.generate({ prompt: 'a red circle', seed: 42, steps: 4 })
 * const png = await tti.image(images[0].sha256)
 * const webp = await tti.image(images[0].sha256, { format: 'webp', width: 32 })
 */
// Wire types are inferred from the schemas the API validates and documents with (type-only
// imports: nothing of zod or the server is bundled into the client).
import type * as z from 'zod'
import { BATCH_MAX_ITEMS } from '../embeds/limits'
import {
  imagePath,
  OUTPUT_FORMAT_NAMES,
  OUTPUT_FORMATS,
  VARIANT_WIDTHS,
  type OutputFormat,
} from '../images/formats'
import type { BatchItem, EmbedRequest } from '../embeds/schema'
import type { ImageRequest } from '../images/schema'
import type { CreateKeyBody } from '../keys/api-keys'
import type {
  BatchResultSchema,
  CreatedKeySchema,
  ImageResultSchema,
  ImagesResponseSchema,
  JobSchema,
  KeyRecordSchema,
  MintedEmbedSchema,
  ModelSchema,
  ProblemSchema,
  ProgressEventSchema,
} from '../openapi/schemas'
import { PROBLEM_TYPE_BASE } from '../problem'

/** Prefix of every problem `type`; the rest is the slug (e.g. `rate-limited`). */
export { PROBLEM_TYPE_BASE }

/** Most items one `batch` call may hold. */
export { BATCH_MAX_ITEMS }

/** The `output_format`s (`png` first, the default), their table, and a variant's widths. */
export { OUTPUT_FORMAT_NAMES, OUTPUT_FORMATS, VARIANT_WIDTHS, type OutputFormat }

/** A form of a stored image: its PNG by default, or another format, quality or width. */
export interface ImageVariant {
  /** `png` (default), `webp` or `jpeg`. */
  format?: OutputFormat
  /** One of `VARIANT_WIDTHS`, at most the image's width; its own width when absent. */
  width?: number
  /** Encoder quality 0–100 of webp and jpeg; the format's default when absent. */
  quality?: number
}

/** Options of `new TtiClient`. */
export interface TtiClientOptions {
  /** The API's origin, e.g. `https://tti.example.com` (a trailing slash is fine). */
  baseUrl: string
  /** An API key (`tti_…`) for generation and model listing. */
  apiKey?: string
  /** The deployment's `ADMIN_TOKEN`, for the key management methods. */
  adminToken?: string
  /** The `fetch` to use (defaults to the global one). */
  fetch?: typeof fetch
}

/** The body of `POST /v1/images` (snake_case, exactly as the API takes it). */
export type GenerateParams = Omit<z.input<typeof ImageRequest>, PictureField> & {
  [K in PictureField]?: PictureInput
}

/** The fields that carry a picture. */
type PictureField = 'image' | 'mask' | 'control_image'

/**
 * A picture for `image`, `mask` or `control_image`: bytes or a Blob (sent as a multipart file
 * part), or text: base64, a `data:` URL, or a stored image's sha256 or permanent URL.
 */
export type PictureInput = Blob | Uint8Array | string

/** One generated image: its permanent URL and content hash. */
export type GeneratedImageInfo = z.output<typeof ImageResultSchema>

/** The key's quota after a request, from the `RateLimit-*` headers (absent when not sent). */
export interface RateLimitInfo {
  limit: number
  remaining: number
  resetSeconds: number
}

/** One denoising step of a streamed generation (the `progress` event of `POST /v1/images`). */
export type GenerationProgress = z.output<typeof ProgressEventSchema>

/** The answer of `generate`. */
export type GenerateResult = z.output<typeof ImagesResponseSchema> & { rateLimit?: RateLimitInfo }

/** A model as `GET /v1/models` describes it. */
export type ModelDescription = z.output<typeof ModelSchema>

/** The body of `POST /v1/embeds`: one image (seed required), optional expiry and origins. */
export type EmbedParams = z.input<typeof EmbedRequest>

/** A signed embed URL, as `POST /v1/embeds` answers it. */
export type EmbedInfo = z.output<typeof MintedEmbedSchema>

/** One item of `batch`: the `generate` parameters of one image and an optional id. */
export type BatchItemParams = z.input<typeof BatchItem>

/** The answer of `batch`: images and problems, keyed by item id (or index). */
export type BatchResult = z.output<typeof BatchResultSchema>

/** A key as the admin API shows it (never the key itself, except at creation). */
export type KeyRecord = z.output<typeof KeyRecordSchema>

/** The body of `POST /v1/keys`. */
export type CreateKeyParams = z.input<typeof CreateKeyBody>

/** A job (`submit`, `job`, `cancelJob`): queued, running, succeeded or cancelled. */
export type JobInfo = z.output<typeof JobSchema>

/** A new key as `createKey` answers it: the record, the key and its webhook secret. */
export type CreatedKey = z.output<typeof CreatedKeySchema>

/** A problem+json body (RFC 9457) with the API's extension members. */
export type Problem = z.output<typeof ProblemSchema> & { [extension: string]: unknown }

/** An API error: the problem the server sent (or one built from a non-problem answer). */
export class TtiApiError extends Error {
  /** HTTP status. */
  readonly status: number
  /** The problem's `type` URI; match on `slug` instead to stay independent of the base. */
  readonly type: string
  /** The stable identifier after the type base, e.g. `validation-error`, `rate-limited`. */
  readonly slug: string
  /** The occurrence-specific explanation, when the server gave one. */
  readonly detail: string | undefined
  /** Seconds to wait before retrying, from `Retry-After` (429, 503). */
  readonly retryAfter: number | undefined
  /** The whole problem body. */
  readonly problem: Problem

  constructor(problem: Problem, retryAfter?: number) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title)
    this.name = 'TtiApiError'
    this.status = problem.status
    this.type = problem.type
    this.slug = problem.type.startsWith(PROBLEM_TYPE_BASE)
      ? problem.type.slice(PROBLEM_TYPE_BASE.length)
      : problem.type
    this.detail = problem.detail
    this.retryAfter = retryAfter
    this.problem = problem
  }
}

/** A client of one deployment. */
export class TtiClient {
  /** The API origin, without a trailing slash. */
  readonly baseUrl: string
  readonly #apiKey: string | undefined
  readonly #adminToken: string | undefined
  readonly #fetch: typeof fetch

  constructor(options: TtiClientOptions) {
    if (!/^https?:\/\//.test(options.baseUrl)) {
      throw new TypeError(`baseUrl must be an http(s) URL, got "${options.baseUrl}"`)
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.#apiKey = options.apiKey
    this.#adminToken = options.adminToken
    // Bound so a global fetch is not called with the client as `this` (browsers reject that).
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init))
  }

  /**
   * Generates (or fetches from the cache) images; resolves to their permanent URLs. With
   * `onProgress` each denoising step is reported (a cache hit reports none). With `signal`,
   * aborting stops the generation on the server too (`DELETE /v1/jobs/{id}`, refunding it)
   * when no other caller waits on it. Either streams the request (`text/event-stream`), whose
   * headers name the job (`X-Request-Key`) before the first step.
   */
  async generate(
    params: GenerateParams,
    init: { signal?: AbortSignal; onProgress?: (p: GenerationProgress) => void } = {},
  ): Promise<GenerateResult> {
    const streamed = Boolean(init.onProgress || init.signal)
    const accept = streamed ? 'text/event-stream' : 'application/json'
    const res = await this.#request('/v1/images', this.#apiKey, {
      method: 'POST',
      ...this.#body(params, { Accept: accept }),
      signal: init.signal,
    })
    const rateLimit = rateLimitOf(res.headers)
    const id = res.headers.get('X-Request-Key')
    const onAbort = () => {
      // Best effort: the job may have finished, or be shared with another caller (409).
      if (id) this.cancelJob(id).catch(() => {})
    }
    init.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      let body: Omit<GenerateResult, 'rateLimit'> | undefined
      if (!streamed) body = await res.json()
      else {
        for await (const { event, data } of serverSentEvents(res)) {
          if (event === 'progress') init.onProgress?.(data as GenerationProgress)
          else if (event === 'done') body = data as Omit<GenerateResult, 'rateLimit'>
          else if (event === 'error') throw new TtiApiError(data as Problem)
          else if (event === 'cancelled') throw new TtiApiError(CANCELLED_PROBLEM)
        }
        init.signal?.throwIfAborted()
        if (!body) throw new Error('the event stream ended before the images were ready')
      }
      return { ...body!, ...(rateLimit ? { rateLimit } : {}) }
    } finally {
      init.signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * Submits a generation as a job (`Prefer: respond-async`): resolves at once to the images for
   * a cache hit, else to the queued job to poll with `job` (or to hear of at `webhook_url`).
   */
  async submit(params: GenerateParams): Promise<GenerateResult | JobInfo> {
    const res = await this.#request('/v1/images', this.#apiKey, {
      method: 'POST',
      ...this.#body(params, { Accept: 'application/json', Prefer: 'respond-async' }),
    })
    return res.json() as Promise<GenerateResult | JobInfo>
  }

  /** A job's state: queued, running (with progress), succeeded (with images) or cancelled. */
  async job(id: string): Promise<JobInfo> {
    const res = await this.#request(`/v1/jobs/${jobId(id)}`, this.#apiKey, {})
    return res.json() as Promise<JobInfo>
  }

  /** Cancels a queued or running generation of this key's and refunds it. */
  async cancelJob(id: string): Promise<JobInfo> {
    const res = await this.#request(`/v1/jobs/${jobId(id)}`, this.#apiKey, { method: 'DELETE' })
    return res.json() as Promise<JobInfo>
  }

  /** Mints a signed embed URL (needs the `embed` scope); generates nothing yet. */
  async createEmbed(params: EmbedParams): Promise<EmbedInfo> {
    const res = await this.#request('/v1/embeds', this.#apiKey, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(params),
    })
    return res.json() as Promise<EmbedInfo>
  }

  /**
   * Generates (or finds in the cache) up to `BATCH_MAX_ITEMS` images in one request; resolves
   * to their permanent URLs and a problem for each item that failed.
   */
  async batch(items: BatchItemParams[]): Promise<BatchResult> {
    const res = await this.#request('/v1/batch', this.#apiKey, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ items }),
    })
    return res.json() as Promise<BatchResult>
  }

  /**
   * The bytes of an image by its SHA-256: the PNG, or a variant of it (its permanent URL needs
   * no key; a variant the server refuses, such as a width above the image's, is a 422).
   */
  async image(sha256: string, variant: ImageVariant = {}): Promise<Uint8Array> {
    const res = await this.#request(this.imagePath(sha256, variant), undefined, {})
    return new Uint8Array(await res.arrayBuffer())
  }

  /** The permanent URL of an image or of a variant, e.g. for `srcset`. */
  imageUrl(sha256: string, variant: ImageVariant = {}): string {
    return this.baseUrl + this.imagePath(sha256, variant)
  }

  /** The path of `imageUrl`, as the server spells it (one spelling, one cache entry). */
  imagePath(sha256: string, variant: ImageVariant = {}): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) {
      throw new TypeError(`not a SHA-256 hex digest: "${sha256}"`)
    }
    const { format = 'png', width, quality } = variant
    if (!OUTPUT_FORMAT_NAMES.includes(format)) {
      throw new TypeError(`format must be one of ${OUTPUT_FORMAT_NAMES.join(', ')}`)
    }
    return imagePath(sha256, {
      format,
      ...(width === undefined ? {} : { width }),
      ...(quality === undefined ? {} : { quality }),
    })
  }

  /** The models this deployment serves (needs a key with the `read` scope). */
  async models(): Promise<ModelDescription[]> {
    const res = await this.#request('/v1/models', this.#apiKey, {})
    return ((await res.json()) as { models: ModelDescription[] }).models
  }

  /** Creates an API key (admin); the returned `key` and `webhook_secret` are shown this once. */
  async createKey(params: CreateKeyParams = {}): Promise<CreatedKey> {
    const res = await this.#request('/v1/keys', this.#adminToken, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(params),
    })
    return res.json() as Promise<CreatedKey>
  }

  /** Draws a new webhook secret for a key (admin); the old one stops signing at once. */
  async rotateWebhookSecret(id: string): Promise<{ id: string; webhook_secret: string }> {
    const path = `/v1/keys/${encodeURIComponent(id)}/webhook-secret`
    const res = await this.#request(path, this.#adminToken, { method: 'POST' })
    return res.json() as Promise<{ id: string; webhook_secret: string }>
  }

  /** Lists all API keys, revoked ones included (admin). */
  async listKeys(): Promise<KeyRecord[]> {
    const res = await this.#request('/v1/keys', this.#adminToken, {})
    return ((await res.json()) as { keys: KeyRecord[] }).keys
  }

  /** Revokes a key by id (admin); resolves to its record, now with `revoked_at`. */
  async revokeKey(id: string): Promise<KeyRecord> {
    const res = await this.#request(`/v1/keys/${encodeURIComponent(id)}`, this.#adminToken, {
      method: 'DELETE',
    })
    return res.json() as Promise<KeyRecord>
  }

  /** A generation's body: pictures as bytes go as multipart file parts, the rest as JSON. */
  #body(params: GenerateParams, headers: Record<string, string>): RequestInit {
    return hasBinaryPicture(params)
      ? { headers, body: formOf(params) }
      : {
          headers: { 'Content-Type': 'application/json', ...headers },
          body: JSON.stringify(params),
        }
  }

  async #request(path: string, token: string | undefined, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers)
    if (token) headers.set('Authorization', `Bearer ${token}`)
    const res = await this.#fetch(this.baseUrl + path, { ...init, headers })
    if (!res.ok) throw await toApiError(res)
    return res
  }
}

/** What a stream's `cancelled` event means, as the problem a poll of the job would carry. */
const CANCELLED_PROBLEM: Problem = Object.freeze({
  type: PROBLEM_TYPE_BASE + 'generation-cancelled',
  title: 'The generation was cancelled (DELETE /v1/jobs/{id})',
  status: 409,
})

/** Checks a job id (a request key) before it goes into a path. */
function jobId(id: string): string {
  if (!/^[0-9a-f]{64}$/.test(id)) throw new TypeError(`not a job id: "${id}"`)
  return id
}

function hasBinaryPicture(params: GenerateParams): boolean {
  return (['image', 'mask', 'control_image'] as const).some((k) => typeof params[k] === 'object')
}

/** A request as multipart/form-data: pictures as file parts, every other field as text. */
function formOf(params: GenerateParams): FormData {
  const form = new FormData()
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue
    if (v instanceof Blob) form.append(k, v, `${k}.png`)
    else if (v instanceof Uint8Array)
      form.append(k, new Blob([v as Uint8Array<ArrayBuffer>]), `${k}.png`)
    else form.append(k, String(v))
  }
  return form
}

/** Turns a failed response into a `TtiApiError`, whatever its body (proxies send HTML too). */
export async function toApiError(res: Response): Promise<TtiApiError> {
  const retry = Number(res.headers.get('Retry-After') ?? NaN)
  const retryAfter = Number.isFinite(retry) ? retry : undefined
  const text = await res.text().catch(() => '')
  let problem: Problem | undefined
  try {
    const body = JSON.parse(text) as Partial<Problem>
    if (typeof body?.type === 'string' && typeof body.title === 'string') {
      problem = { ...body, status: res.status } as Problem
    }
  } catch {
    // not JSON: described below from the status line
  }
  problem ??= {
    type: 'about:blank',
    title: res.statusText || `HTTP ${res.status}`,
    status: res.status,
    ...(text ? { detail: text.slice(0, 200) } : {}),
  }
  return new TtiApiError(problem, retryAfter)
}

/** Parses a `text/event-stream` body into its events (JSON `data`), in order. */
async function* serverSentEvents(res: Response): AsyncGenerator<{ event: string; data: unknown }> {
  if (!res.body) return
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value.replace(/\r\n?/g, '\n')
    for (let end; (end = buffer.indexOf('\n\n')) >= 0; ) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      let event = 'message'
      const data: string[] = []
      for (const line of frame.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
      }
      if (data.length) yield { event, data: JSON.parse(data.join('\n')) }
    }
  }
}

function rateLimitOf(headers: Headers): RateLimitInfo | undefined {
  const limit = headers.get('RateLimit-Limit')
  if (limit === null) return undefined
  return {
    limit: Number(limit),
    remaining: Number(headers.get('RateLimit-Remaining')),
    resetSeconds: Number(headers.get('RateLimit-Reset')),
  }
}
