/**
 * `Accept: text/event-stream` on POST /v1/images, through the real app, coordinator and bundled
 * model: step progress then `done`, hits, errors before and after the stream starts, joiners,
 * and a client that disconnects mid-generation without wasting it.
 * Engine wrappers only count, delay or fail calls; the model is always the real one.
 */
import { env } from 'cloudflare:test'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { PROBLEM_TYPE_BASE } from '../../src/problem'
import {
  call,
  createKey,
  eventually,
  expectProblem,
  postImages,
  unwrapGenerate,
  wrapGenerate,
} from './helpers'

const SSE = { Accept: 'text/event-stream' }
let key: string
afterEach(unwrapGenerate)

beforeAll(async () => {
  key = (await createKey({ name: 'progress', rate_limit: { burst: 1000, period_seconds: 60 } })).key
})

interface SseEvent {
  event: string
  data: unknown
}

/** Parses one SSE frame (`event:` and `data:` lines). */
function parseFrame(frame: string): SseEvent {
  let event = 'message'
  const data: string[] = []
  for (const line of frame.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7)
    else if (line.startsWith('data: ')) data.push(line.slice(6))
  }
  return { event, data: JSON.parse(data.join('\n')) }
}

/** Reads a whole event stream. */
async function readEvents(res: Response): Promise<SseEvent[]> {
  const text = await res.text()
  return text
    .split('\n\n')
    .filter((f) => f.trim())
    .map(parseFrame)
}

type Done = { images: { url: string; sha256: string; seed: number }[]; cached: boolean }

describe('POST /v1/images with Accept: text/event-stream', () => {
  it('streams every step in order, then done with the JSON answer; a repeat is done at once', async () => {
    const body = { prompt: 'a red circle', seed: 501, steps: 6 }
    const res = await postImages(key, body, SSE)
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toMatch(/^text\/event-stream/)
    expect(res.headers.get('Cache-Control')).toBe('no-store')
    expect(res.headers.get('X-Cache')).toBe('MISS')
    expect(res.headers.get('X-Seed')).toBe('501')
    expect(res.headers.get('X-Request-Key')).toMatch(/^[0-9a-f]{64}$/)
    expect(res.headers.get('RateLimit-Limit')).toBe('1000')
    const events = await readEvents(res)
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data)
    expect(progress).toEqual(
      [1, 2, 3, 4, 5, 6].map((step) => ({ step, total_steps: 6, image: 0, n: 1 })),
    )
    const last = events.at(-1)!
    expect(last.event).toBe('done')
    const done = last.data as Done
    expect(done.cached).toBe(false)
    expect(done.images[0].seed).toBe(501)

    // The same JSON a plain request gets, now from the cache.
    const json = await postImages(key, body, { Accept: 'application/json' })
    expect(await json.json()).toEqual({ ...done, cached: true })

    const hit = await postImages(key, body, SSE)
    expect(hit.headers.get('X-Cache')).toBe('HIT')
    expect(await readEvents(hit)).toEqual([{ event: 'done', data: { ...done, cached: true } }])
  })

  it('reports validation, auth and quota errors as ordinary problem responses, not streams', async () => {
    await expectProblem(
      await postImages(key, { prompt: 'x', steps: 100000 }, SSE),
      422,
      'validation-error',
    )
    await expectProblem(await postImages(undefined, { prompt: 'x' }, SSE), 401, 'unauthorized')
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    await expectProblem(
      await postImages(tight, { prompt: 'x', steps: 1, n: 2, seed: 502 }, SSE),
      429,
      'rate-limited',
    )
  })

  it('ends a stream whose generation fails with an error event carrying the problem', async () => {
    let calls = 0
    wrapGenerate((inner) => async (req, opts) => {
      calls++
      await inner({ ...req, steps: 2 }, opts) // real steps, real progress, then the fault
      throw new Error('injected engine failure')
    })
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const res = await postImages(tight, { prompt: 'doomed stream', seed: 503, steps: 2 }, SSE)
    expect(res.status).toBe(200)
    const events = await readEvents(res)
    expect(events.filter((e) => e.event === 'progress').length).toBe(2)
    const last = events.at(-1)!
    expect(last.event).toBe('error')
    expect(last.data).toMatchObject({
      type: `${PROBLEM_TYPE_BASE}generation-failed`,
      status: 503,
      instance: '/v1/images',
    })
    expect(calls).toBe(1)
    // The charge was refunded: the one-image key can still generate.
    unwrapGenerate()
    await eventually(async () => {
      const retry = await postImages(tight, { prompt: 'doomed stream', seed: 503, steps: 2 })
      expect(retry.status).toBe(200)
    })
  })

  it('gives a joiner the flight’s progress and the same images', async () => {
    let calls = 0
    wrapGenerate((inner) => async (req, opts) => {
      calls++
      await new Promise((r) => setTimeout(r, 200)) // keep the flight open while the second arrives
      return inner(req, opts)
    })
    const body = { prompt: 'two watchers', seed: 504, steps: 4 }
    const [a, b] = await Promise.all([postImages(key, body, SSE), postImages(key, body, SSE)])
    const [ea, eb] = await Promise.all([readEvents(a), readEvents(b)])
    for (const events of [ea, eb]) {
      expect(events.filter((e) => e.event === 'progress').length).toBeGreaterThan(0)
      expect(events.at(-1)!.event).toBe('done')
    }
    expect((ea.at(-1)!.data as Done).images).toEqual((eb.at(-1)!.data as Done).images)
    expect(calls).toBe(1)
  })

  it('a client that disconnects mid-generation does not waste it: the result is cached', async () => {
    let calls = 0
    let finished = false
    wrapGenerate((inner) => async (req, opts) => {
      calls++
      const images = await inner(req, opts)
      finished = true
      return images
    })
    const body = { prompt: 'walked away', seed: 505, steps: 30 }
    const abort = new AbortController()
    const res = await call('/v1/images', {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...SSE },
      body: JSON.stringify(body),
      signal: abort.signal,
    })
    const requestKey = res.headers.get('X-Request-Key')!
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
    let seen = ''
    while (!seen.includes('event: progress')) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`stream ended before any progress: ${seen}`)
      seen += value
    }
    abort.abort()
    await reader.cancel().catch(() => {})
    expect(finished).toBe(false) // the client left mid-generation

    await eventually(async () => {
      expect(await env.INDEX.get(requestKey)).not.toBe(null)
    }, 60_000)
    const again = await postImages(key, body, { Accept: 'application/json' })
    expect(again.headers.get('X-Cache')).toBe('HIT')
    expect(calls).toBe(1)
  })
})
