/**
 * @module
 * Generation failures as data. Engines throw `BackendError` (a status and a message); whatever
 * crosses a boundary (Durable Object RPC, a polled job) carries the plain `EngineFailure` that
 * `failureOf` makes of any error, never text to parse back. The HTTP layer maps a failure to
 * its problem in one place (`src/images/create-images.ts` `failureProblem`).
 */

/** What kind of failure a generation had, with the HTTP status a client should see. */
export interface EngineFailure {
  status: 502 | 503 | 504
  type: 'backend-error' | 'backend-unavailable' | 'backend-timeout' | 'generation-failed'
  detail: string
}

/** The failure type of each backend status. */
const BACKEND_TYPES = Object.freeze({
  502: 'backend-error',
  503: 'backend-unavailable',
  504: 'backend-timeout',
} as const)

/** A generation failure caused by a GPU backend or a hosted provider, with its status. */
export class BackendError extends Error {
  override name = 'BackendError'
  /** Builds the error; `status` is what the client should see. */
  constructor(
    readonly status: 502 | 503 | 504,
    message: string,
  ) {
    super(message)
  }

  /** The failure as plain data. */
  get failure(): EngineFailure {
    return { status: this.status, type: BACKEND_TYPES[this.status], detail: this.message }
  }
}

/** The plain-data failure of any error an engine threw. */
export function failureOf(error: unknown): EngineFailure {
  if (error instanceof BackendError) return error.failure
  const detail = error instanceof Error ? error.message : String(error)
  return { status: 503, type: 'generation-failed', detail }
}
