/**
 * @module
 * POST /v1/images as one domain function: read the pictures, validate, key, look up, charge the
 * quota on a miss, and hand misses to the request key's single-flight coordinator.
 */
import { canonicalRequest, requestKey } from '../cache/cache-key'
import { lookup, type ImageStoreDeps, type IndexEntry } from '../cache/image-store'
import type { GenerationResult } from '../durable/generation-coordinator'
import { failureOf, type EngineFailure } from '../engine/errors'
import type { GenerateRequest, TextToImageEngine } from '../engine/types'
import { ProblemError } from '../problem'
import type { Variant } from './formats'
import { readRequestPictures } from './request-pictures'
import { resolveRequest } from './validate'

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
    run(requestKey: string, req: GenerateRequest): Promise<GenerationResult>
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

/**
 * Returns the images for a request body, generating them only when no stored entry exists.
 * `singleImage` (a PNG response) rejects n > 1 with 406 once the body is otherwise valid.
 */
export async function createImages(
  deps: CreateImagesDeps,
  body: unknown,
  options: { singleImage: boolean },
): Promise<CreateImagesResult> {
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
  const { model, req, tokens, output } = resolveRequest(fields, deps.engine, pictures)
  if (options.singleImage && req.n > 1) {
    throw new ProblemError('not-acceptable', {
      detail: 'an image answer holds one image; send Accept: application/json for n > 1',
    })
  }
  const key = await requestKey(canonicalRequest(model, req, tokens, deps.cacheScope))

  const stored = await lookup(deps.store, key)
  if (stored) {
    await deps.charge(0)
    return { entry: stored, cached: true, requestKey: key, output }
  }

  const refund = await deps.charge(req.n)
  let outcome: GenerationResult
  try {
    outcome = await deps.coordinator(key).run(key, req)
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
