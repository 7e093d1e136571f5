/**
 * `Prefer: respond-async` on POST /v1/images and `GET /v1/jobs/{id}`, through the real app,
 * coordinator and bundled model: 202 with a job to poll, progress while it runs, the images once
 * it succeeds, the problem once it fails, hits answered at once, unknown ids 404.
 * Engine wrappers only count, delay or fail calls; the model is always the real one.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  call,
  createKey,
  eventually,
  expectProblem,
  postImages,
  unwrapGenerate,
  wrapGenerate,
} from './helpers'

const ASYNC = { Prefer: 'respond-async', Accept: 'application/json' }
let key: string
afterEach(unwrapGenerate)

beforeAll(async () => {
  key = (await createKey({ name: 'jobs', rate_limit: { burst: 1000, period_seconds: 60 } })).key
})

/** GETs a job path with the test key. */
function poll(path: string, withKey = key): Promise<Response> {
  return call(path, { headers: withKey ? { Authorization: `Bearer ${withKey}` } : {} })
}

type Job = {
  id: string
  status: string
  progress?: { step: number; total_steps: number; image: number; n: number } | null
  images?: { url: string; sha256: string; seed: number }[]
  model?: string
}

describe('Prefer: respond-async', () => {
  it('answers 202 with a job that reports progress, then the same images a plain request gets', async () => {
    let calls = 0
    wrapGenerate((inner) => async (req, opts) => {
      calls++
      return inner(req, opts)
    })
    const body = { prompt: 'a blue square', seed: 601, steps: 30 }
    const res = await postImages(key, body, ASYNC)
    expect(res.status).toBe(202)
    const requestKey = res.headers.get('X-Request-Key')!
    expect(res.headers.get('Location')).toBe(`/v1/jobs/${requestKey}`)
    expect(res.headers.get('Preference-Applied')).toBe('respond-async')
    expect(res.headers.get('X-Cache')).toBe('MISS')
    expect(res.headers.get('X-Seed')).toBe('601')
    expect(res.headers.get('RateLimit-Remaining')).toBe('999') // charged when accepted
    expect(await res.json()).toEqual({ id: requestKey, status: 'running', progress: null })

    // Poll as a client would; keep every running answer to check the progress it carried.
    const running: Job[] = []
    let last: Job
    for (;;) {
      const job = await poll(res.headers.get('Location')!)
      expect(job.status).toBe(200)
      expect(job.headers.get('Cache-Control')).toBe('no-store')
      last = (await job.json()) as Job
      if (last.status !== 'running') break
      expect(job.headers.get('Retry-After')).toBe('1')
      running.push(last)
      await new Promise((r) => setTimeout(r, 5))
    }
    const steps = running.flatMap((j) => (j.progress ? [j.progress.step] : []))
    expect(steps.length).toBeGreaterThan(0)
    expect(steps).toEqual([...steps].sort((a, b) => a - b))
    expect(running.find((j) => j.progress)!.progress).toMatchObject({ total_steps: 30, n: 1 })

    expect(last.status).toBe('succeeded')
    expect(last.id).toBe(requestKey)
    const plain = await postImages(key, body, { Accept: 'application/json' })
    expect(plain.headers.get('X-Cache')).toBe('HIT')
    const json = (await plain.json()) as Job
    expect(last.images).toEqual(json.images)
    expect(last.model).toBe(json.model)
    expect(calls).toBe(1)

    const image = await call(new URL(last.images![0].url).pathname)
    expect(image.status).toBe(200)
  })

  it('answers a cache hit at once with 200 (the preference is not applied)', async () => {
    const body = { prompt: 'already there', seed: 602, steps: 2 }
    const first = await postImages(key, body, { Accept: 'application/json' })
    const hit = await postImages(key, body, ASYNC)
    expect(hit.status).toBe(200)
    expect(hit.headers.get('Preference-Applied')).toBe(null)
    expect(hit.headers.get('X-Cache')).toBe('HIT')
    expect(await hit.json()).toEqual({ ...((await first.json()) as object), cached: true })
  })

  it('keeps validation and quota errors synchronous problems', async () => {
    await expectProblem(
      await postImages(key, { prompt: 'x', steps: 0 }, ASYNC),
      422,
      'validation-error',
    )
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    await expectProblem(
      await postImages(tight, { prompt: 'x', n: 2, steps: 1, seed: 603 }, ASYNC),
      429,
      'rate-limited',
    )
  })

  it('reports a failed job as the generation’s problem, refunds it, and a retry runs again', async () => {
    let calls = 0
    wrapGenerate(() => async () => {
      calls++
      await new Promise((r) => setTimeout(r, 50))
      throw new Error('injected engine failure')
    })
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const body = { prompt: 'doomed job', seed: 604, steps: 2 }
    const res = await postImages(tight, body, ASYNC)
    expect(res.status).toBe(202)
    const location = res.headers.get('Location')!
    await eventually(async () => {
      const job = await poll(location)
      expect(job.headers.get('Retry-After')).toBe('5')
      await expectProblem(job, 503, 'generation-failed')
    })
    // Refunded in the background (waitUntil): the one-image key can try again.
    unwrapGenerate()
    await eventually(async () => {
      expect((await postImages(tight, body, ASYNC)).status).toBe(202)
    })
    await eventually(async () => {
      expect(((await (await poll(location)).json()) as Job).status).toBe('succeeded')
    }, 30_000)
    expect(calls).toBe(1)
  })
})

describe('GET /v1/jobs/{id}', () => {
  it('404s for ids nobody generated and for malformed ids; needs a key', async () => {
    await expectProblem(await poll(`/v1/jobs/${'ab'.repeat(32)}`), 404, 'not-found')
    await expectProblem(await poll('/v1/jobs/not-a-key'), 404, 'not-found')
    await expectProblem(await poll(`/v1/jobs/${'ab'.repeat(32)}`, ''), 401, 'unauthorized')
  })

  it('knows any request key, also one generated without respond-async', async () => {
    const res = await postImages(
      key,
      { prompt: 'a plain one', seed: 605, steps: 2 },
      { Accept: 'application/json' },
    )
    const job = await poll(`/v1/jobs/${res.headers.get('X-Request-Key')}`)
    expect(await job.json()).toMatchObject({
      status: 'succeeded',
      images: ((await res.json()) as Job).images,
    })
  })
})
