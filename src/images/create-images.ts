/**
 * @module
 * POST /v1/images as one domain function: validate, key, look up, charge the quota on a miss,
 * and hand misses to the request key's single-flight coordinator.
 */
import { canonicalRequest, requestKey } from '../cache/cache-key'
import { lookup, type ImageStoreDeps, type IndexEntry } from '../cache/image-store'
import type { GenerationOutcome } from '../durable/generation-coordinator'
import type { GenerateRequest, TextToImageEngine } from '../engine/types'
import { backendStatus } from '../engine/remote-engine'
import { ProblemError, type ProblemSlug } from '../problem'
import { resolveRequest } from './validate'

/** The problem for each GPU backend failure status (see `BackendError`). */
const BACKEND_PROBLEMS = Object.freeze({
  502: 'backend-error',
  503: 'backend-unavailable',
  504: 'backend-timeout',
} as const satisfies Record<502 | 503 | 504, ProblemSlug>)

/** Seconds a client should wait after a failed generation. */
export const GENERATION_RETRY_AFTER_SECONDS = 5

/** The problem a failed generation answers with (also for a polled job that failed). */
export function generationProblem(error: unknown): ProblemError {
  const status = backendStatus(error)
  return new ProblemError(status ? BACKEND_PROBLEMS[status] : 'generation-failed', {
    headers: { 'Retry-After': String(GENERATION_RETRY_AFTER_SECONDS) },
  })
}

/** What creating images needs. */
export interface CreateImagesDeps {
  engine: Pick<TextToImageEngine, 'models' | 'tokenize'>
  store: ImageStoreDeps
  /** The single-flight coordinator of a request key. */
  coordinator: (requestKey: string) => {
    run(requestKey: string, req: GenerateRequest): Promise<GenerationOutcome>
  }
  /**
   * Charges `cost` images against the caller's quota (0 on a hit); throws 429 when exhausted.
   * Resolves to a refund, used when the generation fails.
   */
  charge: (cost: number) => Promise<() => Promise<void>>
}

/** The images of one request. */
export interface CreateImagesResult {
  entry: IndexEntry
  /** Bytes when already in memory (fresh generations); otherwise read them from the store. */
  bytes?: Uint8Array[]
  /** Whether the images were stored before this request needed them. */
  cached: boolean
  requestKey: string
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
  const { model, req, tokens } = resolveRequest(body, deps.engine)
  if (options.singleImage && req.n > 1) {
    throw new ProblemError('not-acceptable', {
      detail: 'image/png holds one image; send Accept: application/json for n > 1',
    })
  }
  const key = await requestKey(canonicalRequest(model, req, tokens))

  const stored = await lookup(deps.store, key)
  if (stored) {
    await deps.charge(0)
    return { entry: stored, cached: true, requestKey: key }
  }

  const refund = await deps.charge(req.n)
  let outcome: GenerationOutcome
  try {
    outcome = await deps.coordinator(key).run(key, req)
  } catch (e) {
    console.error(`generation for ${key} failed`, e)
    await refund().catch((r) => console.warn('quota refund failed', r))
    throw generationProblem(e)
  }
  return {
    entry: outcome.entry,
    bytes: outcome.bytes,
    cached: outcome.source === 'stored',
    requestKey: key,
  }
}
