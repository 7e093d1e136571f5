/**
 * @module
 * Generation as something that runs while the client watches or walks away: `startImages`
 * settles as soon as a request is known to be a hit or a running generation (validation, keying
 * and charging have happened by then, so their errors stay ordinary problem responses), and
 * `streamImages` frames a started request as Server-Sent Events.
 *
 * @example
 * // event: progress           data: {"step":3,"total_steps":20,"image":0,"n":1}
 * // event: done               data: {"images":[{"url":…}],"model":"tiny-shapes","cached":false}
 * // event: error              data: {"type":"https://edge-tti.dev/problems/generation-failed",…}
 * // event: cancelled          data: {"id":"3f1c…","status":"cancelled"}
 */
import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import type { AppEnv } from '../app-env'
import type { IndexEntry } from '../cache/image-store'
import { imagePath } from '../cache/serve-image'
import type { GenerationResult, ProgressListener } from '../durable/generation-coordinator'
import type { GenerateRequest, GenerationProgress } from '../engine/types'
import { ProblemError, problemResponse } from '../problem'
import { createImages, type CreateImagesDeps, type CreateImagesResult } from './create-images'
import { isOriginal, ORIGINAL, type Variant } from './formats'
import { publicBase } from '../public-url'

/** One step of a running generation, as clients see it (SSE `progress`, job `progress`). */
export interface ProgressEvent {
  step: number
  total_steps: number
  /** Index of the image being denoised (the bundled pipeline batches them: always 0). */
  image: number
  /** Images in the request. */
  n: number
  /** Present while the generation waits its turn (step 0): 1 = next to run. */
  queue_position?: number
}

/** The client's form of an engine's progress (one mapping, for SSE and job polling). */
export function progressEvent(p: GenerationProgress, n: number): ProgressEvent {
  return {
    step: p.step,
    total_steps: p.totalSteps,
    image: p.image,
    n,
    ...(p.queuePosition !== undefined ? { queue_position: p.queuePosition } : {}),
  }
}

/** `createImages`' dependencies, with a coordinator that reports progress. */
export interface StartImagesDeps extends Omit<CreateImagesDeps, 'coordinator'> {
  coordinator: (requestKey: string) => {
    run(
      requestKey: string,
      req: GenerateRequest,
      onProgress?: ProgressListener,
      caller?: string,
    ): Promise<GenerationResult>
  }
}

/** A request once it is known whether it needs the engine. */
export type StartedImages =
  | { state: 'ready'; result: CreateImagesResult }
  | {
      state: 'generating'
      requestKey: string
      /** The seed of the first image (drawn at random when the body had none). */
      seed: number
      /** Settles when the generation does; rejects with the generation's `ProblemError`. */
      result: Promise<CreateImagesResult>
    }

/**
 * Runs `createImages` up to the point where a generation starts (or joins a running one) and
 * resolves then, or when the request is answered without one (a cache hit). Rejects with
 * validation, quota and model errors, which all happen before a generation starts.
 */
export async function startImages(
  deps: StartImagesDeps,
  body: unknown,
  onProgress?: (event: ProgressEvent) => void,
  caller?: string,
): Promise<StartedImages> {
  let started!: (s: { requestKey: string; seed: number }) => void
  const generating = new Promise<{ requestKey: string; seed: number }>((r) => (started = r))
  const result = createImages(
    {
      ...deps,
      coordinator: (key) => ({
        run(requestKey, req) {
          started({ requestKey, seed: req.seed })
          const listener = onProgress
            ? (p: GenerationProgress) => onProgress(progressEvent(p, req.n))
            : undefined
          return deps.coordinator(key).run(requestKey, req, listener, caller)
        },
      }),
    },
    body,
    { singleImage: false, caller },
  )
  return Promise.race([
    result.then((r) => ({ state: 'ready' as const, result: r })),
    generating.then((g) => ({ state: 'generating' as const, ...g, result })),
  ])
}

/**
 * The JSON description of a request's images (the body of `POST /v1/images` as JSON). With an
 * `output` other than the original, `url` is that variant's and `png_url` the original's.
 */
export function describeImages(
  entry: IndexEntry,
  cached: boolean,
  requestUrl: string,
  output: Variant = ORIGINAL,
) {
  return {
    images: entry.images.map((img) => ({
      url: new URL(imagePath(img.sha256, output), requestUrl).href,
      ...(isOriginal(output) ? {} : { png_url: new URL(imagePath(img.sha256), requestUrl).href }),
      seed: img.seed,
      sha256: img.sha256,
      width: img.width,
      height: img.height,
    })),
    model: entry.model,
    cached,
  }
}

/** Whether an `Accept` header asks for an event stream (any q > 0 for `text/event-stream`). */
export function wantsEventStream(accept: string | undefined): boolean {
  return (accept ?? '').split(',').some((part) => {
    const [range, ...params] = part.trim().toLowerCase().split(';')
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    return range.trim() === 'text/event-stream' && (q === undefined || Number(q.slice(2)) > 0)
  })
}

/** A buffer between the coordinator's callbacks and the stream that drains them in order. */
export class ProgressQueue implements AsyncIterable<ProgressEvent> {
  #events: ProgressEvent[] = []
  #wake: (() => void) | undefined
  #closed = false

  /** Queues an event (a listener for `startImages`). */
  readonly push = (event: ProgressEvent): void => {
    this.#events.push(event)
    this.#wake?.()
  }

  /** Ends iteration once the queued events are drained. */
  close(): void {
    this.#closed = true
    this.#wake?.()
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ProgressEvent> {
    for (;;) {
      const next = this.#events.shift()
      if (next) yield next
      else if (this.#closed) return
      else await new Promise<void>((r) => (this.#wake = r))
    }
  }
}

/**
 * Answers a started request as `text/event-stream`: queued `progress` events, then `done` with
 * the JSON description, or `error` with the problem. The client going away ends the stream only;
 * the caller keeps the generation alive (`waitUntil`) so its result still lands in the cache.
 */
export function streamImages(
  c: Context<AppEnv>,
  started: StartedImages,
  progress: ProgressQueue,
): Response {
  // Progress ends when the generation settles; the outcome is written after the last step.
  const result = Promise.resolve(started.result).finally(() => progress.close())
  result.catch(() => {}) // handled below, once the stream reaches it
  const res = streamSSE(c, async (stream) => {
    for await (const event of progress) {
      if (stream.aborted) break
      await stream.writeSSE({ event: 'progress', data: JSON.stringify(event) })
    }
    try {
      const r = await result
      const body = describeImages(r.entry, r.cached, publicBase(c), r.output)
      await stream.writeSSE({ event: 'done', data: JSON.stringify(body) })
    } catch (e) {
      // DELETE /v1/jobs/{id} stopped it: the stream says so in its own event, as a poll does.
      if (
        e instanceof ProblemError &&
        e.slug === 'generation-cancelled' &&
        started.state !== 'ready'
      ) {
        const body = { id: started.requestKey, status: 'cancelled' }
        await stream.writeSSE({ event: 'cancelled', data: JSON.stringify(body) })
        return
      }
      const problem =
        e instanceof ProblemError
          ? e.getResponse(new URL(c.req.url).pathname)
          : problemResponse('internal-error')
      await stream.writeSSE({ event: 'error', data: await problem.text() })
    }
  })
  // streamSSE sends `no-cache` (revalidate before reuse); a stream of one request's progress
  // must not be stored at all, as documented.
  res.headers.set('Cache-Control', 'no-store')
  return res
}
