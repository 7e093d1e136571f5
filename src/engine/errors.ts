/**
 * @module
 * Generation failures as data. Engines throw an `EngineError` (a `BackendError` for a GPU backend
 * or hosted provider); whatever crosses a boundary (Durable Object RPC, a polled job, the backend
 * wire) carries the plain `EngineFailure` that `failureOf` makes of any error, never text to
 * parse back. The HTTP layer maps a failure to its problem in one place
 * (`src/images/create-images.ts` `failureProblem`).
 */

/** What kind of failure a generation had: the problem type a client sees, and its status. */
export interface EngineFailure {
  status: 409 | 422 | 500 | 502 | 503 | 504
  type:
    | 'generation-rejected'
    | 'backend-error'
    | 'backend-unavailable'
    | 'backend-timeout'
    | 'generation-failed'
    | 'generation-non-finite'
    | 'engine-overloaded'
    | 'generation-cancelled'
  detail: string
  /** Whether the same request may succeed later (`Retry-After`); false when it would recur. */
  retryable: boolean
  /** Seconds to wait when known (a full queue's estimate); else the default `Retry-After`. */
  retryAfterSeconds?: number
}

/** The failure type of each backend status. */
const BACKEND_TYPES = Object.freeze({
  502: 'backend-error',
  503: 'backend-unavailable',
  504: 'backend-timeout',
} as const)

/** A generation failure that carries its `EngineFailure`. */
export class EngineError extends Error {
  override name = 'EngineError'
  /** Builds the error from its failure. */
  constructor(readonly failure: EngineFailure) {
    super(failure.detail)
  }
}

/** A generation failure caused by a GPU backend or a hosted provider, with its status. */
export class BackendError extends EngineError {
  override name = 'BackendError'
  /** Builds the error; `status` is what the client should see. */
  constructor(
    readonly status: 502 | 503 | 504,
    message: string,
  ) {
    super({ status, type: BACKEND_TYPES[status], detail: message, retryable: true })
  }
}

/** The failure of a generation stopped by `DELETE /v1/jobs/{id}`: final, nothing to retry. */
export const CANCELLED_FAILURE: EngineFailure = Object.freeze({
  status: 409,
  type: 'generation-cancelled',
  detail: 'the generation was cancelled',
  retryable: false,
})

/** The failure for a model output of NaN or infinities: it would recur, so it is no retry. */
export function nonFiniteFailure(detail: string): EngineFailure {
  return { status: 500, type: 'generation-non-finite', detail, retryable: false }
}

/**
 * The failure for parameters the engine refused that validation let through (a pipeline or
 * scheduler constraint): the same request would fail again, so it is a 422 and no retry.
 */
export function rejectedFailure(detail: string): EngineFailure {
  return { status: 422, type: 'generation-rejected', detail, retryable: false }
}

/** Errors of the pipeline that say the request itself cannot be served (by name, see below). */
const INPUT_ERRORS: readonly string[] = Object.freeze([
  'PipelineInputError',
  'SchedulerError',
  'PromptTooLongError',
])

/** The plain-data failure of any error an engine threw. */
export function failureOf(error: unknown): EngineFailure {
  if (error instanceof EngineError) return error.failure
  const detail = error instanceof Error ? error.message : String(error)
  // By name: the pipeline's error class may come from another bundle (the backend's).
  if (error instanceof Error && error.name === 'NonFiniteOutputError')
    return nonFiniteFailure(detail)
  if (error instanceof Error && INPUT_ERRORS.includes(error.name)) return rejectedFailure(detail)
  return { status: 503, type: 'generation-failed', detail, retryable: true }
}
