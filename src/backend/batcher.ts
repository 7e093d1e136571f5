/**
 * @module
 * Optional batching of the GPU backend's jobs: jobs that could share a UNet call (the same
 * `batchKey`: model, size, scheduler and timesteps) and wait for a run slot together form a
 * group; the group takes one slot of the `GenerationQueue` and runs as one batch, each job still
 * with its own result, progress and cancellation. A group takes what joined it while it waited:
 * after an optional collection window, and then for as long as the run slot is busy, up to
 * `maxJobs`; a job arriving after its group started opens the next one.
 *
 * Batching is off by default: on the CPU provider most batched images are bit-identical to their
 * unbatched runs but not all (see the README), and the image cache is content-addressed.
 *
 * @example
 * const batcher = new JobBatcher(queue, { maxJobs: 8, windowMs: 5 }, (jobs) => jobs.map(run))
 * const images = await batcher.submit(key, job, { signal, onQueued })
 */
import type { GenerationQueue } from '../engine/queue'

/** Options of a `JobBatcher` (`--batch N --batch-window MS` on `npm run gpu`). */
export interface BatchOptions {
  /** Most jobs in one batch; 1 runs every job alone. */
  maxJobs: number
  /**
   * How long a new group waits for company before it asks for a run slot, in ms. 0 (the
   * default): it asks at once, and takes whatever joined while the slot was busy.
   */
  windowMs?: number
}

/** Checks batch options once, when the backend is built. */
export function checkBatchOptions(o: BatchOptions): Required<BatchOptions> {
  if (!(Number.isInteger(o.maxJobs) && o.maxJobs >= 1))
    throw new RangeError('batch size must be an integer >= 1')
  const windowMs = o.windowMs ?? 0
  if (!(Number.isFinite(windowMs) && windowMs >= 0 && windowMs <= 10_000))
    throw new RangeError('batch window must be 0..10000 ms')
  return { maxJobs: o.maxJobs, windowMs }
}

/** How a submitted job is told about its wait, and stopped. */
export interface Waiting {
  signal: AbortSignal
  /** The group's queue position (1 = next), whenever it changes. */
  onQueued(position: number): void
}

interface Entry<J, R> extends Waiting {
  job: J
  resolve(r: R): void
  reject(e: unknown): void
}

interface Group<J, R> {
  key: string
  entries: Entry<J, R>[]
  started: boolean
  position?: number
  /** Aborted once every member is: the group leaves the queue. */
  stop: AbortController
}

/** Groups compatible jobs into batches that each take one run slot. */
export class JobBatcher<J, R> {
  readonly #queue: GenerationQueue
  readonly #options: Required<BatchOptions>
  readonly #run: (jobs: J[]) => Promise<R>[]
  /** The group of each key still taking members (not started, not full). */
  readonly #open = new Map<string, Group<J, R>>()

  /**
   * Batches jobs through `queue`; `run` starts a batch (one promise per job, in order) and is
   * called with one job or more.
   */
  constructor(queue: GenerationQueue, options: BatchOptions, run: (jobs: J[]) => Promise<R>[]) {
    this.#queue = queue
    this.#options = checkBatchOptions(options)
    this.#run = run
  }

  /** Whether a job with `key` would join a waiting group (and so take no new queue place). */
  canJoin(key: string): boolean {
    return this.#open.has(key)
  }

  /** Runs `job` in the batch of its `key`; settles with its own result. */
  submit(key: string, job: J, waiting: Waiting): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const entry: Entry<J, R> = { job, resolve, reject, ...waiting }
      const open = this.#open.get(key)
      const group = open ?? { key, entries: [], started: false, stop: new AbortController() }
      if (!open) this.#open.set(key, group)
      group.entries.push(entry)
      if (group.entries.length >= this.#options.maxJobs) this.#close(group)
      if (group.position) waiting.onQueued(group.position)
      waiting.signal.addEventListener('abort', () => this.#leave(group, entry), { once: true })
      // Started once it has its first member: with no window and a free slot it runs at once.
      if (!open) void this.#start(group)
    })
  }

  /** No more members for `group`: later jobs of its key open a new one. */
  #close(group: Group<J, R>): void {
    if (this.#open.get(group.key) === group) this.#open.delete(group.key)
  }

  /**
   * A member's signal fired before its group started: it leaves the group at once (a running
   * member stops through its own signal), and a group left empty leaves the queue.
   */
  #leave(group: Group<J, R>, entry: Entry<J, R>): void {
    if (group.started) return
    group.entries.splice(group.entries.indexOf(entry), 1)
    entry.reject(entry.signal.reason)
    if (group.entries.length) return
    this.#close(group)
    group.stop.abort(entry.signal.reason)
  }

  async #start(group: Group<J, R>): Promise<void> {
    const { windowMs } = this.#options
    if (windowMs > 0) await new Promise((r) => setTimeout(r, windowMs))
    try {
      await this.#queue.run(() => this.#runGroup(group), {
        signal: group.stop.signal,
        onQueued: (position) => {
          group.position = position
          for (const e of group.entries) e.onQueued(position)
        },
      })
    } catch (e) {
      // Refused (the queue is full) or every member went away while it waited.
      this.#close(group)
      for (const entry of group.entries)
        entry.reject(entry.signal.aborted ? entry.signal.reason : e)
    }
  }

  async #runGroup(group: Group<J, R>): Promise<void> {
    this.#close(group)
    group.started = true
    const live = group.entries.filter((e) => {
      if (e.signal.aborted) e.reject(e.signal.reason)
      return !e.signal.aborted
    })
    if (!live.length) return
    let results: Promise<R>[]
    try {
      results = this.#run(live.map((e) => e.job))
    } catch (e) {
      for (const entry of live) entry.reject(e)
      return
    }
    // The slot is held until every job of the batch has settled.
    await Promise.allSettled(results.map((p, i) => p.then(live[i].resolve, live[i].reject)))
  }
}
