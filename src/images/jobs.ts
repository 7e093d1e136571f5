/**
 * @module
 * Jobs for `Prefer: respond-async`. A job's id is its request key: the content hash of the
 * canonical request, already sent as `X-Request-Key`. The image index says whether it
 * succeeded, and the key's coordinator (which records accepted jobs durably) whether it is
 * queued, running, failed or cancelled. Knowing an id reveals nothing beyond what the request
 * itself would. One view of a job serves `GET /v1/jobs/{id}` and the webhooks.
 */
import { lookup, type ImageStoreDeps, type IndexEntry } from '../cache/image-store'
import type { CancelResult, FlightStatus, JobEnd } from '../durable/generation-coordinator'
import type { EngineFailure } from '../engine/errors'
import { ProblemError } from '../problem'
import { webhookPayload } from '../webhooks/webhooks'
import { failureProblem } from './create-images'
import { describeImages, progressEvent, type ProgressEvent } from './progress'

/** The path of a job, as sent in `Location`. */
export function jobPath(requestKey: string): string {
  return `/v1/jobs/${requestKey}`
}

/** A job that has not failed (failures are thrown as their problem). */
export type Job =
  | { status: 'queued' }
  | { status: 'running'; progress: ProgressEvent | null }
  | { status: 'succeeded'; entry: IndexEntry }
  | { status: 'cancelled' }

/** What finding a job needs. */
export interface JobDeps {
  store: ImageStoreDeps
  /** The key's coordinator (its `status()` never starts a generation). */
  coordinator: (requestKey: string) => {
    status(): Promise<FlightStatus> | FlightStatus
    cancel(keyId: string): Promise<CancelResult> | CancelResult
  }
}

/**
 * The job of a request key. Throws 404 `not-found` for a key nobody is generating and nothing
 * is stored under (including a failure the coordinator forgot on eviction), and the
 * generation's problem (503 `generation-failed`, 502/503/504 `backend-*`) for a failed one.
 */
export async function findJob(deps: JobDeps, requestKey: string): Promise<Job> {
  const stored = await lookup(deps.store, requestKey)
  if (stored) return { status: 'succeeded', entry: stored }
  const flight = await deps.coordinator(requestKey).status()
  switch (flight.state) {
    case 'queued':
    case 'cancelled':
      return { status: flight.state }
    case 'running':
      return {
        status: 'running',
        progress: flight.progress && progressEvent(flight.progress, flight.n),
      }
    case 'succeeded':
      return { status: 'succeeded', entry: flight.entry }
    case 'failed':
      throw failureProblem(flight.failure)
    case 'idle':
      throw new ProblemError('not-found', { detail: `no job ${requestKey}` })
  }
}

/** The JSON body of a job that has not failed, as `GET /v1/jobs/{id}` answers it. */
export function jobBody(id: string, job: Job, base: string) {
  switch (job.status) {
    case 'succeeded': {
      const { images, model } = describeImages(job.entry, false, base)
      return { id, status: job.status, images, model }
    }
    case 'running':
      return { id, status: job.status, progress: job.progress }
    case 'queued':
      return { id, status: job.status, progress: null }
    case 'cancelled':
      return { id, status: job.status }
  }
}

/**
 * Cancels the caller's job (`DELETE /v1/jobs/{id}`). Throws 404 when the key has no job under
 * this id, 409 `job-not-cancellable` when it has finished or another request waits on it.
 */
export async function cancelJob(deps: JobDeps, requestKey: string, keyId: string) {
  const result = await deps.coordinator(requestKey).cancel(keyId)
  if (result.ok) return jobBody(requestKey, { status: 'cancelled' }, '')
  if (result.reason === 'not-found')
    throw new ProblemError('not-found', { detail: `this key has no job ${requestKey}` })
  throw new ProblemError('job-not-cancellable', {
    detail:
      result.reason === 'finished'
        ? `job ${requestKey} has finished`
        : `another request waits on job ${requestKey}'s generation, which keeps running`,
  })
}

/** The webhook payload of a job that ended: its job body, or for a failure its problem. */
export function jobWebhookPayload(
  id: string,
  base: string,
  end: {
    state: JobEnd
    entry?: IndexEntry
    failure?: EngineFailure
  },
): string {
  if (end.state === 'succeeded' && end.entry)
    return webhookPayload(
      'image.job.succeeded',
      jobBody(id, { status: 'succeeded', entry: end.entry }, base),
    )
  if (end.state === 'failed' && end.failure) {
    const error = failureProblem(end.failure).body()
    return webhookPayload('image.job.failed', { id, status: 'failed', error })
  }
  return webhookPayload('image.job.cancelled', jobBody(id, { status: 'cancelled' }, base))
}
