/**
 * API keys and admin auth: missing, malformed, wrong, revoked and out-of-scope keys; keys stored
 * only as hashes; constant-time comparison.
 */
import { env } from 'cloudflare:test'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { sha256Hex } from '../../src/util'
import { admin, call, createKey, expectProblem, postImages } from './helpers'

const models = (key?: string) =>
  call('/v1/models', { headers: key ? { Authorization: `Bearer ${key}` } : {} })

afterEach(() => {
  vi.restoreAllMocks()
})

describe('API keys', () => {
  it('are tti_ + base64url of 32 random bytes, stored only as their SHA-256', async () => {
    const { id, key } = await createKey({ name: 'format' })
    expect(key).toMatch(/^tti_[A-Za-z0-9_-]{43}$/)
    const hash = await sha256Hex(key)
    expect(id).toBe(hash.slice(0, 16))
    const stored = await env.KEYS.get(`keys/${id}`)
    expect(stored).toContain(hash)
    expect(stored).not.toContain(key.slice(4))
  })

  it('401 for a missing, malformed or unknown key', async () => {
    const missing = await expectProblem(await models(), 401, 'unauthorized')
    expect(missing.detail).toMatch(/missing/)
    await expectProblem(await models('tti_short'), 401, 'unauthorized')
    const { key } = await createKey()
    const last = key.at(-1) === 'A' ? 'B' : 'A'
    const wrong = key.slice(0, -1) + last
    const res = await models(wrong)
    expect(res.headers.get('WWW-Authenticate')).toMatch(/^Bearer/)
    await expectProblem(res, 401, 'unauthorized')
  })

  it('compares the stored hash with crypto.subtle.timingSafeEqual', async () => {
    const { key } = await createKey()
    const spy = vi.spyOn(crypto.subtle, 'timingSafeEqual')
    expect((await models(key)).status).toBe(200)
    expect(spy).toHaveBeenCalledTimes(1)
    const [a, b] = spy.mock.calls[0]
    expect(new TextDecoder().decode(a as Uint8Array)).toBe(await sha256Hex(key))
    expect((b as Uint8Array).byteLength).toBe(64)
    spy.mockClear()
    await admin('/v1/keys')
    expect(spy).toHaveBeenCalledTimes(1)
  })

  it('401 naming the missing "Bearer " when a key is sent without it', async () => {
    const { key } = await createKey({ scopes: ['read'] })
    const p = await expectProblem(
      await call('/v1/models', { headers: { Authorization: key } }),
      401,
      'unauthorized',
    )
    expect(p.detail).toContain('"Bearer " is missing')
  })

  it('403 for a key without the needed scope', async () => {
    const { key } = await createKey({ scopes: ['read'] })
    expect((await models(key)).status).toBe(200)
    const problem = await expectProblem(
      await postImages(key, { prompt: 'a', seed: 1 }),
      403,
      'insufficient-scope',
    )
    expect(problem.required_scope).toBe('generate')
  })

  it('revocation applies to the very next request, even while KV still holds the old record', async () => {
    const { id, key } = await createKey()
    const before = await env.KEYS.get(`keys/${id}`)
    expect((await models(key)).status).toBe(200)
    const res = await admin(`/v1/keys/${id}`, { method: 'DELETE' })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { revoked_at?: string }).revoked_at).toBeTruthy()
    await expectProblem(await models(key), 403, 'key-revoked')
    // Simulate a KV replica that has not seen the revocation: the Durable Object still refuses.
    await env.KEYS.put(`keys/${id}`, before!)
    await expectProblem(await models(key), 403, 'key-revoked')
  })

  it('lists keys without secrets', async () => {
    const { id } = await createKey({ name: 'listed', rate_limit: { burst: 5, period_seconds: 10 } })
    const res = await admin('/v1/keys')
    const { keys } = (await res.json()) as { keys: Record<string, unknown>[] }
    const listed = keys.find((k) => k.id === id)
    expect(listed).toMatchObject({ name: 'listed', rate_limit: { burst: 5, period_seconds: 10 } })
    expect(listed).not.toHaveProperty('hash')
    expect(listed).not.toHaveProperty('key')
  })
})
