/**
 * Paths the reliability review found untested: each scope on the routes that need it, a key
 * whose id matches but whose full hash does not, backend failures (type, Retry-After, refund),
 * `admin-disabled`, and `internal-error`.
 */
import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { afterEach, describe, expect, it } from 'vitest'
import worker from '../../src/index'
import { sha256Hex } from '../../src/util'
import { BackendError } from '../../src/engine/errors'
import { call, createKey, expectProblem, postImages, unwrapGenerate, wrapGenerate } from './helpers'
import {
  installEngineProvider,
  installedEngine,
  type EngineProvider,
} from '../../src/engine/provider'

afterEach(unwrapGenerate)

const post = (path: string, key: string, body: unknown) =>
  call(path, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })

describe('scopes', () => {
  it('read is what GET /v1/models needs', async () => {
    const { key } = await createKey({ scopes: ['generate'] })
    const p = await expectProblem(
      await call('/v1/models', { headers: { Authorization: `Bearer ${key}` } }),
      403,
      'insufficient-scope',
    )
    expect(p.required_scope).toBe('read')
  })

  it('generate is what jobs and the OpenAI and Hugging Face routes need', async () => {
    const { key } = await createKey({ scopes: ['read'] })
    const auth = { headers: { Authorization: `Bearer ${key}` } }
    for (const res of [
      await call(`/v1/jobs/${'0'.repeat(64)}`, auth),
      await post('/v1/hf/text-to-image', key, { inputs: 'x' }),
    ]) {
      const p = await expectProblem(res, 403, 'insufficient-scope')
      expect(p.required_scope).toBe('generate')
    }
    // The OpenAI route answers in OpenAI's error envelope, with the slug as `code`.
    const openai = await post('/v1/images/generations', key, { prompt: 'x' })
    expect(openai.status).toBe(403)
    expect(((await openai.json()) as { error: { code: string } }).error.code).toBe(
      'insufficient-scope',
    )
  })
})

describe('API key checks', () => {
  it('refuses a key whose id matches a record but whose full hash does not', async () => {
    const { id, key } = await createKey({ scopes: ['read'] })
    const record = JSON.parse((await env.KEYS.get(`keys/${id}`))!)
    // Another key, filed under its own id with the first key's hash: only the full-hash compare
    // tells them apart.
    const other = `tti_${'B'.repeat(43)}`
    const otherId = (await sha256Hex(other)).slice(0, 16)
    await env.KEYS.put(`keys/${otherId}`, JSON.stringify({ ...record, id: otherId }))
    await expectProblem(
      await call('/v1/models', { headers: { Authorization: `Bearer ${other}` } }),
      401,
      'unauthorized',
    )
    expect((await call('/v1/models', { headers: { Authorization: `Bearer ${key}` } })).status).toBe(
      200,
    )
  })
})

describe('backend failures as clients see them', () => {
  it.each([
    [502, 'backend-error'],
    [503, 'backend-unavailable'],
    [504, 'backend-timeout'],
  ] as const)(
    '%i %s: its type, Retry-After, nothing cached, the charge refunded',
    async (status, slug) => {
      const { key } = await createKey({
        scopes: ['generate'],
        rate_limit: { burst: 1, period_seconds: 3600 },
      })
      wrapGenerate(() => async () => {
        throw new BackendError(status, `injected ${slug}`)
      })
      const body = { prompt: `a ${slug}`, seed: 93_000 + status, steps: 2 }
      const res = await postImages(key, body)
      await expectProblem(res, status, slug)
      expect(res.headers.get('Retry-After')).toBe('5')
      unwrapGenerate()
      // One image of quota: refunded, so the retry generates (a miss: nothing was cached).
      const retry = await postImages(key, body)
      expect(retry.status).toBe(200)
      expect(retry.headers.get('X-Cache')).toBe('MISS')
      await retry.arrayBuffer()
    },
  )
})

describe('deployment faults', () => {
  it('admin-disabled (503) without an ADMIN_TOKEN', async () => {
    const ctx = createExecutionContext()
    const res = await worker.fetch(
      new Request('https://tti.test/v1/keys', { headers: { Authorization: 'Bearer x' } }),
      { ...env, ADMIN_TOKEN: '' } as Env,
      ctx,
    )
    await waitOnExecutionContext(ctx)
    await expectProblem(res, 503, 'admin-disabled')
  })

  it('internal-error (500) for a bug, with no detail leaked', async () => {
    const real = await installedEngine(env)
    const previous: EngineProvider | undefined = installEngineProvider(async () => ({
      ...real,
      models: () => {
        throw new TypeError('secret internals: cannot read properties of undefined')
      },
    }))
    try {
      const { key } = await createKey({ scopes: ['generate'] })
      const p = await expectProblem(await postImages(key, { prompt: 'x' }), 500, 'internal-error')
      expect(JSON.stringify(p)).not.toContain('secret internals')
    } finally {
      if (previous) installEngineProvider(previous)
    }
    expect(await installedEngine(env)).toBeTruthy()
  })
})
