/**
 * What a permanent-URL hit touches, counted (not timed): through the real worker with its real
 * bindings, each wrapped only to count calls. A hit makes no Durable Object call (metrics are
 * buffered per isolate, `src/durable/metrics.ts`) and, once the isolate holds the bytes
 * (`src/cache/hot-images.ts`), no R2 or KV read either. An authenticated hit makes one (the
 * key's revocation and quota in one `KeyGuard.check`), and so does an embed view that hits. Also
 * the hot copy's bounds.
 */
import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { HotImages } from '../../src/cache/hot-images'
import { flushMetrics } from '../../src/durable/metrics'
import worker from '../../src/index'
import { call, createKey, postImages } from './helpers'

/** `env` with every Durable Object namespace, the bucket and the KV index counting calls. */
function countingEnv() {
  const calls: Record<string, number> = {}
  const count = <T extends object>(name: string, target: T): T =>
    new Proxy(target, {
      get(t, prop, receiver) {
        const value = Reflect.get(t, prop, receiver)
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          calls[`${name}.${String(prop)}`] = (calls[`${name}.${String(prop)}`] ?? 0) + 1
          return (value as (...a: unknown[]) => unknown).apply(t, args)
        }
      },
    })
  const e = {
    ...env,
    KEY_GUARD: count('KEY_GUARD', env.KEY_GUARD),
    COORDINATOR: count('COORDINATOR', env.COORDINATOR),
    METRICS: count('METRICS', env.METRICS),
    IMAGES: count('IMAGES', env.IMAGES),
    INDEX: count('INDEX', env.INDEX),
  } as Env
  return { env: e, calls }
}

async function fetchWith(e: Env, path: string, init?: RequestInit): Promise<Response> {
  const ctx = createExecutionContext()
  const res = await worker.fetch(new Request(`https://tti.test${path}`, init), e, ctx)
  const body = new Uint8Array(await res.arrayBuffer())
  await waitOnExecutionContext(ctx)
  return new Response(body, { status: res.status, headers: res.headers })
}

describe('permanent-URL hit path', () => {
  it('makes no Durable Object call, and no storage read once the isolate holds the bytes', async () => {
    const { key } = await createKey({ name: 'hit-path' })
    const made = await postImages(
      key,
      { prompt: 'a small red circle', seed: 8301, steps: 2 },
      { Accept: 'application/json' },
    )
    const { images } = (await made.json()) as { images: { sha256: string }[] }
    const path = `/v1/images/${images[0].sha256}.png`
    // A flush just happened: none is due during the next requests.
    await flushMetrics(env.METRICS)
    const first = countingEnv()
    const a = await fetchWith(first.env, path)
    expect(a.status).toBe(200)
    expect(
      Object.keys(first.calls).filter((k) => /^(KEY_GUARD|COORDINATOR|METRICS)/.test(k)),
    ).toEqual([])
    const second = countingEnv()
    const b = await fetchWith(second.env, path)
    expect(b.status).toBe(200)
    expect(second.calls).toEqual({})
    expect(new Uint8Array(await b.arrayBuffer())).toEqual(new Uint8Array(await a.arrayBuffer()))
    expect(b.headers.get('ETag')).toBe(`"${images[0].sha256}"`)
    expect(b.headers.get('Content-Type')).toBe('image/png')
  })
})

describe('authenticated hit path', () => {
  it('makes one Durable Object call: revocation and quota read together', async () => {
    const { key } = await createKey({
      name: 'auth-hit',
      rate_limit: { burst: 5, period_seconds: 60 },
    })
    const body = JSON.stringify({ prompt: 'a small blue circle', seed: 8302, steps: 2 })
    const init = () => ({
      method: 'POST',
      body,
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        Accept: 'image/png',
      },
    })
    const miss = await postImages(key, JSON.parse(body))
    expect(miss.headers.get('X-Cache')).toBe('MISS')
    await miss.arrayBuffer()
    await flushMetrics(env.METRICS)
    const counted = countingEnv()
    const hit = await fetchWith(counted.env, '/v1/images', init())
    expect(hit.status).toBe(200)
    expect(hit.headers.get('X-Cache')).toBe('HIT')
    expect(counted.calls['KEY_GUARD.get']).toBe(1)
    expect(counted.calls['COORDINATOR.get']).toBeUndefined()
    expect(counted.calls['METRICS.get']).toBeUndefined()
    // The quota headers are the bucket's, as the object would have answered: one image taken.
    expect(hit.headers.get('RateLimit-Limit')).toBe('5')
    expect(hit.headers.get('RateLimit-Remaining')).toBe('4')
  })
})

describe('embed view hit path', () => {
  it('makes one Durable Object call: the key check, whose quota answers the zero charge', async () => {
    const { key } = await createKey({ name: 'embed-hit' })
    const minted = await call('/v1/embeds', {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'a small green square', seed: 8303, steps: 2 }),
    })
    expect(minted.status).toBe(200)
    const path = new URL(((await minted.json()) as { url: string }).url).pathname
    const first = await call(path)
    expect(first.status).toBe(200)
    await first.arrayBuffer()
    await flushMetrics(env.METRICS)
    const counted = countingEnv()
    const view = await fetchWith(counted.env, path)
    expect(view.status).toBe(200)
    expect(view.headers.get('Content-Type')).toBe('image/png')
    expect(counted.calls['KEY_GUARD.get']).toBe(1)
    expect(counted.calls['COORDINATOR.get']).toBeUndefined()
    expect(counted.calls['METRICS.get']).toBeUndefined()
  })
})

describe('HotImages', () => {
  it('keeps the most recently used bytes within its capacity', () => {
    const hot = new HotImages(10)
    hot.set('a', new Uint8Array(4))
    hot.set('b', new Uint8Array(4))
    expect(hot.get('a')).toHaveLength(4) // a is now the most recent
    hot.set('c', new Uint8Array(4)) // 12 > 10: the least recent (b) goes
    expect(hot.get('b')).toBeUndefined()
    expect(hot.get('a')).toHaveLength(4)
    expect(hot.get('c')).toHaveLength(4)
    expect(hot.size).toBe(8)
    hot.set('huge', new Uint8Array(11)) // larger than the whole cache: not kept
    expect(hot.get('huge')).toBeUndefined()
    expect(hot.size).toBe(8)
  })
})
