/**
 * The per-key token bucket: RateLimit headers, 429 with Retry-After, cache hits free.
 */
import { describe, expect, it } from 'vitest'
import { takeTokens } from '../../src/durable/key-guard'
import { createKey, expectProblem, postImages } from './helpers'

describe('rate limit', () => {
  it('charges generations, answers 429 + Retry-After when empty, and lets cache hits through', async () => {
    const { key } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const body = { prompt: 'quota', seed: 51, steps: 2 }
    const first = await postImages(key, body)
    expect(first.status).toBe(200)
    expect(first.headers.get('RateLimit-Limit')).toBe('1')
    expect(first.headers.get('RateLimit-Remaining')).toBe('0')
    expect(first.headers.get('RateLimit-Policy')).toBe('1;w=3600')
    expect(Number(first.headers.get('RateLimit-Reset'))).toBeGreaterThan(0)

    const limited = await postImages(key, { ...body, seed: 52 })
    expect(Number(limited.headers.get('Retry-After'))).toBeGreaterThan(0)
    expect(limited.headers.get('RateLimit-Remaining')).toBe('0')
    await expectProblem(limited, 429, 'rate-limited')

    const hit = await postImages(key, body)
    expect(hit.status).toBe(200)
    expect(hit.headers.get('X-Cache')).toBe('HIT')
  })

  it('refills continuously', () => {
    const policy = { burst: 10, period_seconds: 10 }
    const a = takeTokens(undefined, 10, policy, 0)
    expect(a.result).toMatchObject({ allowed: true, remaining: 0, resetSeconds: 10 })
    const b = takeTokens(a.state, 3, policy, 2000)
    expect(b.result).toMatchObject({ allowed: false, retryAfterSeconds: 1 })
    const c = takeTokens(b.state, 3, policy, 3000)
    expect(c.result).toMatchObject({ allowed: true, remaining: 0 })
    expect(takeTokens(undefined, 11, policy, 0).result).toMatchObject({
      allowed: false,
      retryAfterSeconds: 10,
    })
  })
})
