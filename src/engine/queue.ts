/**
 * @module
 * Admission control for an engine: at most `concurrency` generations run at once and the rest
 * wait in FIFO order, so under a burst the first requests finish first (rather than every
 * generation stepping in turn and all finishing together, at the end of the burst). Beyond
 * `maxWaiting` a request is refused at once with 503 `engine-overloaded` and a `Retry-After`
 * estimated from the measured service time, so a client backs off instead of piling on (and the
 * edge fails over to another GPU backend where there is one: the backend answers the same 503).
 *
 * A waiter hears its position (1 = next) whenever it changes, as progress of step 0 with a
 * `queuePosition`, so every progress channel (SSE, job polling, the backend's frames) carries
 * it; one that aborts leaves the queue. Used per isolate around the in-edge WebAssembly engine (`withQueue`), and by
 * the GPU backend service around its runs.
 *
 * @example
 * const engine = withQueue(createPipelineEngine(models), { concurrency: 1, maxWaiting: 64 })
 */
import { EngineError, type EngineFailure } from './errors'
import type { GenerateOptions, TextToImageEngine } from './types'

/** Options of a `GenerationQueue`. */
export interface QueueOptions {
  /** Generations that run at once. */
  concurrency: number
  /** Generations that may wait; one more is refused with 503. */
  maxWaiting: number
  /** Service time assumed before any generation has finished, in ms. */
  initialServiceMs?: number
  /** How often a waiter looks whether its turn came (and its position changed), in ms. */
  pollMs?: number
}

/** Default admission of the in-edge engine: one at a time (ORT WebAssembly runs serially), and
 * about a minute of bundled-model work waiting (128 at ~0.5 s). */
export const EDGE_QUEUE: QueueOptions = Object.freeze({ concurrency: 1, maxWaiting: 128 })

/** Default admission of a GPU backend: one run at a time on its device, 32 waiting. */
export const BACKEND_QUEUE: QueueOptions = Object.freeze({ concurrency: 1, maxWaiting: 32 })

/** The failure of a request the queue has no room for. */
export function overloadedFailure(retryAfterSeconds: number, detail: string): EngineFailure {
  return { status: 503, type: 'engine-overloaded', detail, retryable: true, retryAfterSeconds }
}

interface Waiter {
  /** Set by the task that hands over its slot. */
  granted: boolean
}

/** A FIFO admission queue with a bounded number of running and waiting tasks. */
export class GenerationQueue {
  readonly #options: Required<QueueOptions>
  #running = 0
  readonly #waiting: Waiter[] = []
  /** Exponentially weighted mean of finished tasks' durations (ms). */
  #serviceMs: number

  /** Builds the queue; throws on options that could never admit anything. */
  constructor(options: QueueOptions) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency >= 1))
      throw new RangeError('concurrency must be an integer >= 1')
    if (!(Number.isInteger(options.maxWaiting) && options.maxWaiting >= 0))
      throw new RangeError('maxWaiting must be an integer >= 0')
    this.#options = { initialServiceMs: 2_000, pollMs: 20, ...options }
    this.#serviceMs = this.#options.initialServiceMs
  }

  /** Tasks running and waiting now. */
  get depth(): { running: number; waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length }
  }

  /** Whether a task arriving now would be refused. */
  get full(): boolean {
    return (
      this.#running >= this.#options.concurrency && this.#waiting.length >= this.#options.maxWaiting
    )
  }

  /** Seconds until a request arriving now would likely start, for `Retry-After` (at least 1). */
  retryAfterSeconds(): number {
    const ahead = this.#running + this.#waiting.length
    return Math.max(1, Math.ceil((ahead * this.#serviceMs) / this.#options.concurrency / 1000))
  }

  /**
   * Runs `task` when its turn comes. Rejects with 503 `engine-overloaded` when the queue is
   * full, and with the signal's reason when aborted while waiting.
   */
  async run<T>(
    task: () => Promise<T>,
    opts: { signal?: AbortSignal; onQueued?: (position: number) => void } = {},
  ): Promise<T> {
    opts.signal?.throwIfAborted()
    if (this.#running >= this.#options.concurrency) {
      if (this.#waiting.length >= this.#options.maxWaiting) {
        const after = this.retryAfterSeconds()
        throw new EngineError(
          overloadedFailure(
            after,
            `${this.#running} generations running and ${this.#waiting.length} waiting; retry in about ${after} s`,
          ),
        )
      }
      await this.#wait(opts)
    } else this.#running++
    const started = Date.now()
    try {
      return await task()
    } finally {
      this.#serviceMs = 0.8 * this.#serviceMs + 0.2 * (Date.now() - started)
      this.#release()
    }
  }

  async #wait(opts: { signal?: AbortSignal; onQueued?: (position: number) => void }) {
    const waiter: Waiter = { granted: false }
    this.#waiting.push(waiter)
    // Each waiter watches for its turn on its own timer rather than being woken by the task
    // that finishes: in workerd every Durable Object has its own I/O context, and a callback
    // (a progress stub, a promise's continuation doing I/O) must run in its owner's.
    let told = 0
    for (;;) {
      if (waiter.granted) return
      if (opts.signal?.aborted) {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1)
        throw opts.signal.reason
      }
      const position = this.#waiting.indexOf(waiter) + 1
      if (position !== told) opts.onQueued?.((told = position))
      await new Promise((r) => setTimeout(r, this.#options.pollMs))
    }
  }

  #release(): void {
    const next = this.#waiting.shift()
    // The slot passes from the finishing task to the next waiter: `#running` stays as it is.
    if (next) next.granted = true
    else this.#running--
  }
}

/** An engine whose generations go through a `GenerationQueue` (positions as progress). */
export function withQueue(engine: TextToImageEngine, options: QueueOptions): TextToImageEngine {
  const queue = new GenerationQueue(options)
  return {
    models: () => engine.models(),
    tokenize: (model, text) => engine.tokenize(model, text),
    generate(req, opts: GenerateOptions = {}) {
      return queue.run(() => engine.generate(req, opts), {
        signal: opts.signal,
        onQueued: (queuePosition) =>
          opts.onProgress?.({ step: 0, totalSteps: req.steps, image: 0, queuePosition }),
      })
    },
  }
}
