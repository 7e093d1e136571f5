/**
 * @module
 * POST /v1/images as domain functions: read the pictures, validate, key, look up, charge the
 * quota on a miss, and hand misses to the request key's single-flight coordinator — to wait for
 * (`createImages`) or, for `Prefer: respond-async`, as a durable job (`acceptImages`).
 */
import { canonicalRequest, requestKey } from '../cache/cache-key'
import { lookup, type ImageStoreDeps, type IndexEntry } from '../cache/image-store'
import type { FlightStatus, GenerationResult, JobTicket } from '../durable/generation-coordinator'
import { failureOf, type EngineFailure } from '../engine/errors'
import type { GenerateRequest, PictureField, TextToImageEngine } from '../engine/types'
import type { RateLimitPolicy } from '../keys/api-keys'
import { ProblemError, throwFieldErrors } from '../problem'
import { webhookMessage, webhookTargetProblem, type WebhookMessage } from '../webhooks/webhooks'
import type { Variant } from './formats'
import { jobWebhookPayload } from './jobs'
import { readRequestPictures } from './request-pictures'
import { resolveRequest, type ResolvedRequest } from './validate'

/** Seconds a client should wait after a failed generation. */
export const GENERATION_RETRY_AFTER_SECONDS = 5

/**
 * The problem a failed generation answers with (also for a polled job that failed): the one
 * mapping from an engine failure to HTTP. The failure's type is a problem slug as it is.
 */
export function failureProblem(failure: EngineFailure): ProblemError {
  return new ProblemError(failure.type, {
    // Deterministic failures say why (the same request fails the same way); others stay terse.
    ...(failure.retryable ? {} : { detail: failure.detail }),
    headers: failure.retryable
      ? { 'Retry-After': String(failure.retryAfterSeconds ?? GENERATION_RETRY_AFTER_SECONDS) }
      : {},
  })
}

/** What creating images needs. */
export interface CreateImagesDeps {
  engine: Pick<TextToImageEngine, 'models' | 'tokenize'>
  store: ImageStoreDeps
  /** The single-flight coordinator of a request key. */
  coordinator: (requestKey: string) => {
    run(
      requestKey: string,
      req: GenerateRequest,
      onProgress?: undefined,
      caller?: string,
    ): Promise<GenerationResult>
  }
  /**
   * Charges `cost` images against the caller's quota (0 on a hit); throws 429 when exhausted.
   * Resolves to a refund, used when the generation fails.
   */
  charge: (cost: number) => Promise<() => Promise<void>>
  /** With the per-key cache scope (`CACHE_SCOPE=key`): the caller's key id, part of the key. */
  cacheScope?: string
}

/** The images of one request. */
export interface CreateImagesResult {
  entry: IndexEntry
  /** Bytes when already in memory (fresh generations); otherwise read them from the store. */
  bytes?: Uint8Array[]
  /** Whether the images were stored before this request needed them. */
  cached: boolean
  requestKey: string
  /** The form the answer takes (`output_format`, `output_compression`). */
  output: Variant
}

/** A request validated and keyed, before anything is charged. */
interface PreparedImages extends ResolvedRequest {
  key: string
  stored: IndexEntry | null
}

/** Reads the pictures, validates, keys and looks the request up (steps shared by both forms). */
async function prepareImages(
  deps: Pick<CreateImagesDeps, 'engine' | 'store' | 'cacheScope'>,
  body: unknown,
  options: { singleImage: boolean },
): Promise<PreparedImages> {
  // Pictures first: their sizes set the output's. No picture is decoded beyond the largest
  // size any served model takes.
  const maxPixels = Math.max(
    ...deps.engine.models().map((m) => m.limits.maxWidth * m.limits.maxHeight),
  )
  const { fields, pictures } = await readRequestPictures(
    body,
    { images: deps.store.images },
    { maxPixels },
  )
  const resolved = resolveRequest(fields, deps.engine, pictures)
  if (options.singleImage && resolved.req.n > 1) {
    throw new ProblemError('not-acceptable', {
      detail: 'an image answer holds one image; send Accept: application/json for n > 1',
    })
  }
  const { model, req, tokens } = resolved
  const key = await requestKey(canonicalRequest(model, req, tokens, deps.cacheScope))
  return { ...resolved, key, stored: await lookup(deps.store, key) }
}

/**
 * Returns the images for a request body, generating them only when no stored entry exists.
 * `singleImage` (a PNG response) rejects n > 1 with 406 once the body is otherwise valid.
 * `caller` (the API key id) lets that key cancel the generation while it waits here.
 */
export async function createImages(
  deps: CreateImagesDeps,
  body: unknown,
  options: { singleImage: boolean; caller?: string },
): Promise<CreateImagesResult> {
  const { key, req, output, stored, webhookUrl } = await prepareImages(deps, body, options)
  if (webhookUrl !== undefined)
    throwFieldErrors([{ field: 'webhook_url', detail: 'needs Prefer: respond-async' }])
  if (stored) {
    await deps.charge(0)
    return { entry: stored, cached: true, requestKey: key, output }
  }

  const refund = await deps.charge(req.n)
  let outcome: GenerationResult
  try {
    outcome = await deps.coordinator(key).run(key, req, undefined, options.caller)
  } catch (e) {
    // The coordinator answers failures as data; a throw here is the RPC itself failing.
    outcome = { ok: false, failure: failureOf(e) }
  }
  if (!outcome.ok) {
    console.error(`generation for ${key} failed: ${outcome.failure.detail}`)
    await refund().catch((r) => console.warn('quota refund failed', r))
    throw failureProblem(outcome.failure)
  }
  return {
    entry: outcome.entry,
    bytes: outcome.bytes,
    cached: outcome.source === 'stored',
    requestKey: key,
    output,
  }
}

/** What accepting a job needs besides `createImages`' dependencies. */
export interface AcceptImagesDeps extends Omit<CreateImagesDeps, 'coordinator'> {
  coordinator: (requestKey: string) => {
    accept(requestKey: string, ticket: JobTicket): Promise<FlightStatus>
  }
  /** The caller: whose quota a job takes (`policy`), whose secret signs its webhooks. */
  caller: { keyId: string; policy: RateLimitPolicy; hasWebhookSecret: boolean }
  /** Whether webhook targets may be private or loopback (`WEBHOOK_PRIVATE_TARGETS`). */
  allowPrivateWebhooks: boolean
  /** Queues a webhook delivery (the WEBHOOKS queue). */
  sendWebhook: (message: WebhookMessage) => Promise<unknown>
  /** The origin of links in webhook payloads. */
  base: string
}

/** A request answered at once (a hit), or accepted as a job. */
export type AcceptedImages =
  | { state: 'ready'; result: CreateImagesResult }
  | { state: 'accepted'; requestKey: string; seed: number; status: 'queued' | 'running' }

/**
 * `Prefer: respond-async`: a hit is answered at once; a miss is charged and recorded as a job by
 * its coordinator, which queues it. With `webhook_url` the outcome is also delivered there (for
 * a hit too, at once).
 */
export async function acceptImages(deps: AcceptImagesDeps, body: unknown): Promise<AcceptedImages> {
  const { key, req, output, stored, webhookUrl } = await prepareImages(deps, body, {
    singleImage: false,
  })
  if (webhookUrl !== undefined) {
    const problem = !deps.caller.hasWebhookSecret
      ? `this key has no webhook secret: an admin can make one with POST /v1/keys/${deps.caller.keyId}/webhook-secret`
      : webhookTargetProblem(webhookUrl, deps.allowPrivateWebhooks)
    if (problem) throwFieldErrors([{ field: 'webhook_url', detail: problem }])
  }
  const webhook =
    webhookUrl === undefined ? undefined : { keyId: deps.caller.keyId, url: webhookUrl }
  const hit = async (entry: IndexEntry): Promise<AcceptedImages> => {
    if (webhook) {
      const payload = jobWebhookPayload(key, deps.base, { state: 'succeeded', entry })
      await deps.sendWebhook(webhookMessage(webhook.keyId, webhook.url, payload))
    }
    return { state: 'ready', result: { entry, cached: true, requestKey: key, output } }
  }
  if (stored) {
    await deps.charge(0)
    return hit(stored)
  }

  const refund = await deps.charge(req.n)
  const { pictures, ...request } = req
  const refs: JobTicket['pictures'] = {}
  for (const [field, p] of Object.entries(pictures ?? {})) refs[field as PictureField] = p.sha256
  let status: FlightStatus
  try {
    status = await deps.coordinator(key).accept(key, {
      request,
      pictures: refs,
      claim: { keyId: deps.caller.keyId, cost: req.n, policy: deps.caller.policy },
      webhook,
      base: deps.base,
    })
  } catch (e) {
    await refund().catch((r) => console.warn('quota refund failed', r))
    throw e
  }
  if (status.state === 'succeeded') {
    // Stored between the lookup and the job: a hit after all.
    await refund().catch((r) => console.warn('quota refund failed', r))
    return hit(status.entry)
  }
  return {
    state: 'accepted',
    requestKey: key,
    seed: req.seed,
    status: status.state === 'running' ? 'running' : 'queued',
  }
}
