/**
 * @module
 * Jobs for `Prefer: respond-async`. A job's id is its request key: the content hash of the
 * canonical request, already sent as `X-Request-Key`. So a job needs no table of its own: the
 * image index says whether it succeeded, and the key's coordinator whether it is running or
 * failed. Knowing an id reveals nothing beyond what the request itself would.
 */
import { lookup, type ImageStoreDeps, type IndexEntry } from '../cache/image-store'
import type { FlightStatus } from '../durable/generation-coordinator'
import { ProblemError } from '../problem'
import { failureProblem } from './create-images'
import { progressEvent, type ProgressEvent } from './progress'

/** The path of a job, as sent in `Location`. */
export function jobPath(requestKey: string): string {
  return `/v1/jobs/${requestKey}`
}

/** A job that has not failed (failures are thrown as their problem). */
export type Job =
  | { status: 'running'; progress: ProgressEvent | null }
  | { status: 'succeeded'; entry: IndexEntry }

/** What finding a job needs. */
export interface JobDeps {
  store: ImageStoreDeps
  /** The key's coordinator (its `status()` never starts a generation). */
  coordinator: (requestKey: string) => { status(): Promise<FlightStatus> | FlightStatus }
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
