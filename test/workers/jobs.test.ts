/**
 * `Prefer: respond-async` on POST /v1/images, `GET /v1/jobs/{id}` and `DELETE /v1/jobs/{id}`,
 * through the real app, coordinator, JOBS queue (miniflare's) and bundled model: 202 with a job
 * to poll, progress while it runs, the images once it succeeds, retries with backoff after a
 * retryable failure, the problem once it fails for good, hits answered at once, unknown ids 404,
 * and cancellation (queued, running, streaming; refused when another key waits).
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
    expect(await res.json()).toEqual({ id: requestKey, status: 'queued', progress: null })

    // Poll as a client would; keep every running answer to check the progress it carried.
    const running: Job[] = []
    let last: Job
    for (;;) {
      const job = await poll(res.headers.get('Location')!)
      expect(job.status).toBe(200)
      expect(job.headers.get('Cache-Control')).toBe('no-store')
      last = (await job.json()) as Job
      if (last.status === 'queued') {
        expect(last.progress).toBe(null)
        await new Promise((r) => setTimeout(r, 5))
        continue
      }
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

  it('retries a run that failed retryably, with backoff, and then succeeds', async () => {
    let calls = 0
    wrapGenerate((inner) => async (req, opts) => {
      if (++calls <= 2) throw new Error('injected engine failure')
      return inner(req, opts)
    })
    const res = await postImages(key, { prompt: 'second time lucky', seed: 606, steps: 2 }, ASYNC)
    expect(res.status).toBe(202)
    const location = res.headers.get('Location')!
    const failedAt: number[] = []
    await eventually(async () => {
      const job = (await (await poll(location)).json()) as Job
      // Between runs the job is queued again, never reported failed.
      expect(['queued', 'running', 'succeeded']).toContain(job.status)
      failedAt[calls] ??= Date.now()
      expect(job.status).toBe('succeeded')
    }, 30_000)
    expect(calls).toBe(3)
    // JOB_RETRY_BASE_SECONDS is 1 here: 1 s, then 2 s, before the second and third runs.
    expect(failedAt[3] - failedAt[1]).toBeGreaterThanOrEqual(2500)
  })

  it('reports a job whose failure would recur as its problem, refunds it, and a retry runs again', async () => {
    let calls = 0
    wrapGenerate(() => async () => {
      calls++
      await new Promise((r) => setTimeout(r, 50))
      const e = new Error('injected: the pipeline refuses this request')
      e.name = 'PipelineInputError'
      throw e
    })
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const body = { prompt: 'doomed job', seed: 604, steps: 2 }
    const res = await postImages(tight, body, ASYNC)
    expect(res.status).toBe(202)
    const location = res.headers.get('Location')!
    await eventually(async () => {
      await expectProblem(await poll(location), 422, 'generation-rejected')
    })
    expect(calls).toBe(1) // not retried: it would fail the same way
    // Refunded by the job's coordinator: the one-image key can try again.
    unwrapGenerate()
    const again = await postImages(tight, body, ASYNC)
    expect(again.status).toBe(202)
    await eventually(async () => {
      expect(((await (await poll(location)).json()) as Job).status).toBe('succeeded')
    }, 30_000)
  })
})

/** DELETEs a job path with a key. */
function cancel(path: string, withKey = key): Promise<Response> {
  return call(path, { method: 'DELETE', headers: { Authorization: `Bearer ${withKey}` } })
}

/** Resolves once the engine has reported step `step` of some generation (wraps `generate`). */
function stepReached(step: number): Promise<void> {
  return new Promise((resolve) =>
    wrapGenerate(
      (inner) => (req, opts) =>
        inner(req, {
          ...opts,
          onProgress: (p) => {
            opts?.onProgress?.(p)
            if (p.step >= step) resolve()
          },
        }),
    ),
  )
}

describe('DELETE /v1/jobs/{id}', () => {
  it('stops a running job, refunds it, and the poll then says cancelled', async () => {
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const running = stepReached(1)
    const body = { prompt: 'a green triangle', seed: 610, steps: 40 }
    const res = await postImages(tight, body, ASYNC)
    expect(res.status).toBe(202)
    const location = res.headers.get('Location')!
    await running
    const del = await cancel(location, tight)
    expect(del.status).toBe(200)
    expect(await del.json()).toEqual({ id: res.headers.get('X-Request-Key'), status: 'cancelled' })
    await eventually(async () => {
      expect(await (await poll(location, tight)).json()).toMatchObject({ status: 'cancelled' })
    })
    // The run stopped: nothing is stored, however long one waits for its 40 steps.
    await new Promise((r) => setTimeout(r, 1500))
    expect(((await (await poll(location, tight)).json()) as Job).status).toBe('cancelled')
    // Cancelling again is a no-op; the one-image quota came back, so the key can ask again.
    expect((await cancel(location, tight)).status).toBe(200)
    unwrapGenerate()
    expect((await postImages(tight, { ...body, steps: 2 }, ASYNC)).status).toBe(202)
  })

  it('cancels a queued job without touching the one running', async () => {
    const first = stepReached(1)
    const a = await postImages(key, { prompt: 'a red circle', seed: 611, steps: 20 }, ASYNC)
    await first
    const b = await postImages(key, { prompt: 'a blue circle', seed: 612, steps: 2 }, ASYNC)
    expect(b.status).toBe(202)
    expect((await cancel(b.headers.get('Location')!)).status).toBe(200)
    await eventually(async () => {
      const job = (await (await poll(a.headers.get('Location')!)).json()) as Job
      expect(job.status).toBe('succeeded')
    }, 30_000)
    const job = (await (await poll(b.headers.get('Location')!)).json()) as Job
    expect(job.status).toBe('cancelled')
  })

  it('ends the caller’s own event stream with a cancelled event and refunds it', async () => {
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const running = stepReached(1)
    const body = { prompt: 'a yellow square', seed: 613, steps: 40 }
    const res = await postImages(tight, body, { Accept: 'text/event-stream' })
    const id = res.headers.get('X-Request-Key')!
    const text = res.text()
    await running
    // No job was accepted: the stream is the generation's only caller, and it is this key's.
    const del = await cancel(`/v1/jobs/${id}`, tight)
    expect(del.status).toBe(200)
    const events = (await text).split('\n\n').filter((f) => f.trim())
    const last = events.at(-1)!
    expect(last).toContain('event: cancelled')
    expect(JSON.parse(last.split('data: ')[1])).toEqual({ id, status: 'cancelled' })
    expect(await (await poll(`/v1/jobs/${id}`, tight)).json()).toMatchObject({
      status: 'cancelled',
    })
    unwrapGenerate()
    await eventually(async () => {
      expect((await postImages(tight, { ...body, steps: 2 }, ASYNC)).status).toBe(202)
    })
  })

  it('refuses when another key waits on the generation, which then completes for it', async () => {
    const running = stepReached(1)
    const body = { prompt: 'a white circle', seed: 614, steps: 30 }
    const a = await postImages(key, body, ASYNC)
    await running
    const { key: other } = await createKey({ rate_limit: { burst: 10, period_seconds: 60 } })
    // A stream that joins hears the flight's current step at once: then it is surely waiting.
    const joined = await postImages(other, body, { Accept: 'text/event-stream' })
    const reader = joined.body!.pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    while (!text.includes('event: progress')) text += (await reader.read()).value ?? ''
    await expectProblem(await cancel(a.headers.get('Location')!), 409, 'job-not-cancellable')
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += value
    }
    expect(text).toContain('event: done')
  })

  it('404s for another key’s job and 409s for a finished one', async () => {
    const res = await postImages(key, { prompt: 'a black square', seed: 615, steps: 2 }, ASYNC)
    const location = res.headers.get('Location')!
    const { key: other } = await createKey()
    await expectProblem(await cancel(location, other), 404, 'not-found')
    await eventually(async () => {
      expect(((await (await poll(location)).json()) as Job).status).toBe('succeeded')
    }, 30_000)
    await expectProblem(await cancel(location), 409, 'job-not-cancellable')
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
