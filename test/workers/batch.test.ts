/**
 * POST /v1/batch through the real app in workerd: a list of prompts becomes a map of permanent
 * URLs; misses are charged one image each, hits nothing; per-item problems leave the rest alone.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { call, createKey, expectProblem } from './helpers'

function batch(key: string | undefined, body: unknown): Promise<Response> {
  return call('/v1/batch', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(key ? { Authorization: `Bearer ${key}` } : {}),
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

interface BatchAnswer {
  images: Record<
    string,
    { url: string; sha256: string; seed: number; width: number; height: number; cached: boolean }
  >
  errors: Record<string, { type: string; status: number; detail?: string; errors?: unknown[] }>
}

let key: string

beforeAll(async () => {
  key = (await createKey({ name: 'batch', rate_limit: { burst: 1000, period_seconds: 60 } })).key
})

describe('POST /v1/batch', () => {
  it('needs a key with the generate scope', async () => {
    const body = { items: [{ prompt: 'x', seed: 1 }] }
    await expectProblem(await batch(undefined, body), 401, 'unauthorized')
    const reader = await createKey({ scopes: ['read', 'embed'] })
    await expectProblem(await batch(reader.key, body), 403, 'insufficient-scope')
  })

  it('maps ids (or indexes) to permanent URLs; a rerun is all cache hits and costs nothing', async () => {
    const items = [
      { id: 'hero', prompt: 'a red circle', seed: 61_001, steps: 2 },
      { prompt: 'a blue square', seed: 61_002, steps: 2 },
      { id: 'hero-again', prompt: 'A  RED circle', seed: 61_001, steps: 2 }, // same tokens
    ]
    const res = await batch(key, { items })
    expect(res.status).toBe(200)
    expect(res.headers.get('Cache-Control')).toBe('no-store')
    const first = (await res.json()) as BatchAnswer
    expect(first.errors).toEqual({})
    // A JSON object: integer-like ids come first, so compare as a set.
    expect(Object.keys(first.images).sort()).toEqual(['1', 'hero', 'hero-again'])
    expect(first.images.hero).toMatchObject({ seed: 61_001, width: 64, height: 64, cached: false })
    expect(first.images['hero-again']).toEqual({ ...first.images.hero, cached: true })
    for (const img of Object.values(first.images)) {
      expect(img.url).toBe(`https://tti.test/v1/images/${img.sha256}.png`)
      const png = await call(new URL(img.url).pathname)
      expect(png.status).toBe(200)
      expect(png.headers.get('ETag')).toBe(`"${img.sha256}"`)
    }
    const remaining = Number(res.headers.get('RateLimit-Remaining'))

    const again = await batch(key, { items })
    const second = (await again.json()) as BatchAnswer
    expect(Object.values(second.images).every((img) => img.cached)).toBe(true)
    expect(Object.values(second.images).map((i) => i.sha256)).toEqual(
      Object.values(first.images).map((i) => i.sha256),
    )
    expect(Number(again.headers.get('RateLimit-Remaining'))).toBeGreaterThanOrEqual(remaining)
  })

  it('reports a failing item as its problem and still runs the others', async () => {
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const res = await batch(tight, {
      items: [
        { id: 'ok', prompt: 'a green dot', seed: 61_011, steps: 1 },
        { id: 'too-many-steps', prompt: 'a green dot', seed: 61_012, steps: 10_000 },
        { id: 'no-steps', prompt: 'a green dot', seed: 61_012, steps: 0 },
        { id: 'over-quota', prompt: 'a green dot', seed: 61_013, steps: 1 },
        { id: 'hit', prompt: 'a green dot', seed: 61_011, steps: 1 },
      ],
    })
    expect(res.status).toBe(200)
    const body = (await res.json()) as BatchAnswer
    expect(Object.keys(body.images).sort()).toEqual(['hit', 'ok'])
    expect(body.images.hit.cached).toBe(true)
    expect(body.errors['too-many-steps']).toMatchObject({
      type: 'https://edge-tti.dev/problems/validation-error',
      status: 422,
      errors: [expect.objectContaining({ field: 'steps' })],
    })
    expect(body.errors['no-steps'].detail).toMatch(/^steps: must be between 1 and \d+$/)
    expect(body.errors['over-quota']).toMatchObject({
      type: 'https://edge-tti.dev/problems/rate-limited',
      status: 429,
      retry_after: expect.any(Number),
    })
  })

  it('rejects a malformed batch as a whole with 422, before generating anything', async () => {
    const item = { prompt: 'x', seed: 1, steps: 1 }
    const cases: [unknown, string][] = [
      [{ items: [] }, 'items'],
      [{ items: Array.from({ length: 65 }, () => item) }, 'items'],
      [
        {
          items: [
            { ...item, id: 'a' },
            { ...item, id: 'a' },
          ],
        },
        'items.1.id',
      ],
      [{ items: [{ ...item, id: '1' }, item] }, 'items.1.id'], // id "1" and index 1 collide
      [{ items: [{ ...item, n: 2 }] }, 'items.0.n'],
      [{ items: [{ ...item, steps: 'two' }] }, 'items.0.steps'],
      [{ prompts: ['x'] }, 'prompts'],
    ]
    for (const [body, field] of cases) {
      const problem = await expectProblem(await batch(key, body), 422, 'validation-error')
      const fields = (problem.errors as { field: string }[]).map((e) => e.field)
      expect({ field, fields }).toEqual({ field, fields: expect.arrayContaining([field]) })
    }
  })
})
