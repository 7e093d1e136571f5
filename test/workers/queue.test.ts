/**
 * The generation queue (`src/engine/queue.ts`) through the real app, coordinators and bundled
 * model: a burst runs in arrival order (a long first generation finishes before short later
 * ones, which interleaved stepping would reverse), waiters see their place in the SSE stream
 * and in `GET /v1/jobs/{id}`, and beyond the depth limit a request gets 503
 * `engine-overloaded` with `Retry-After` and is not charged. Engine wrappers only count calls
 * or bound the queue; the model is always the real one.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { GenerationQueue } from '../../src/engine/queue'
import {
  call,
  createKey,
  eventually,
  expectProblem,
  postImages,
  unwrapGenerate,
  wrapGenerate,
} from './helpers'

let key: string
afterEach(unwrapGenerate)

beforeAll(async () => {
  key = (await createKey({ name: 'queue', rate_limit: { burst: 1000, period_seconds: 60 } })).key
})

interface SseEvent {
  event: string
  data: { queue_position?: number; step?: number }
}

/** Reads an event stream to its end; resolves with its events and when it ended. */
async function readStream(res: Response): Promise<{ events: SseEvent[]; endedAt: number }> {
  const text = await res.text()
  const events = text
    .split('\n\n')
    .filter((f) => f.trim())
    .map((frame) => {
      let event = 'message'
      let data = ''
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7)
        else if (line.startsWith('data: ')) data += line.slice(6)
      }
      return { event, data: JSON.parse(data) }
    })
  return { events, endedAt: performance.now() }
}

describe('generation queue', () => {
  it('runs a burst in arrival order and tells each waiter its place', async () => {
    let started = 0
    wrapGenerate((inner) => async (req, opts) => {
      started++
      return inner(req, opts)
    })
    const SSE = { Accept: 'text/event-stream' }
    // A long generation, then two short ones while it runs.
    const a = await postImages(key, { prompt: 'a red circle', seed: 8101, steps: 40 }, SSE)
    await eventually(async () => expect(started).toBe(1))
    const aDone = readStream(a)
    const b = await postImages(key, { prompt: 'a blue square', seed: 8102, steps: 2 }, SSE)
    await eventually(async () => expect(started).toBe(2))
    const bDone = readStream(b)
    const c = await postImages(
      key,
      { prompt: 'a green triangle', seed: 8103, steps: 2 },
      { Prefer: 'respond-async', Accept: 'application/json' },
    )
    expect(c.status).toBe(202)
    const job = `/v1/jobs/${c.headers.get('X-Request-Key')}`
    await eventually(async () => expect(started).toBe(3))
    // The job waits behind A and B: polling says where.
    const polled = (await (
      await call(job, { headers: { Authorization: `Bearer ${key}` } })
    ).json()) as { status: string; progress: { step: number; queue_position?: number } | null }
    expect(polled.status).toBe('running')
    expect(polled.progress).toMatchObject({ step: 0, queue_position: 2 })

    const [ra, rb] = await Promise.all([aDone, bDone])
    // B waited first in line, then ran its two steps.
    const bProgress = rb.events.filter((e) => e.event === 'progress').map((e) => e.data)
    expect(bProgress[0]).toMatchObject({ step: 0, queue_position: 1 })
    expect(bProgress.slice(1).map((p) => p.step)).toEqual([1, 2])
    // A ran without waiting, and finished first although it had twenty times the steps.
    expect(ra.events.some((e) => e.data.queue_position !== undefined)).toBe(false)
    expect(ra.events.at(-1)!.event).toBe('done')
    expect(rb.events.at(-1)!.event).toBe('done')
    expect(ra.endedAt).toBeLessThan(rb.endedAt)
    await eventually(async () => {
      const done = (await (
        await call(job, { headers: { Authorization: `Bearer ${key}` } })
      ).json()) as { status: string }
      expect(done.status).toBe('succeeded')
    }, 30_000)
  })

  it('refuses beyond the depth limit with 503 engine-overloaded and Retry-After, uncharged', async () => {
    // A queue with no waiting room in front of the engine: the second concurrent miss is refused.
    const queue = new GenerationQueue({ concurrency: 1, maxWaiting: 0 })
    let started = 0
    wrapGenerate((inner) => (req, opts) => {
      started++
      return queue.run(() => inner(req, opts))
    })
    const first = postImages(key, { prompt: 'a red square', seed: 8201, steps: 40 })
    await eventually(async () => expect(started).toBe(1))
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const body = { prompt: 'a blue circle', seed: 8202, steps: 2 }
    const refused = await postImages(tight, body)
    await expectProblem(refused, 503, 'engine-overloaded')
    expect(Number(refused.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1)
    const firstRes = await first
    expect(firstRes.status).toBe(200)
    await firstRes.arrayBuffer()
    // Nothing was charged or cached: the one-image key generates it now.
    const retry = await postImages(tight, body)
    expect(retry.status).toBe(200)
    expect(retry.headers.get('X-Cache')).toBe('MISS')
    await retry.arrayBuffer()
  })
})
