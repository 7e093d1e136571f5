/**
 * Generation through the real app and the real engine (`getEngine`, the bundled model): cache
 * hits, permanent URLs, prompt normalization by token ids, single flight, failures.
 * Engine wrappers only count, delay or fail calls; the model is always the real one.
 */
import { env } from 'cloudflare:test'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { installedEngine } from '../../src/engine/provider'
import {
  call,
  createKey,
  eventually,
  expectProblem,
  metric,
  postImages,
  unwrapGenerate,
  wrapGenerate,
} from './helpers'

let key: string
let modelId: string
/** Small, cheap requests: few steps at the model's default size. */
const base = { steps: 2 }

afterEach(unwrapGenerate)

beforeAll(async () => {
  key = (await createKey({ name: 'generation', rate_limit: { burst: 1000, period_seconds: 60 } }))
    .key
  modelId = (await installedEngine(env)).models()[0].id
})

const bytesOf = async (res: Response) => new Uint8Array(await res.arrayBuffer())

describe('POST /v1/images', () => {
  it('MISS then HIT with identical bytes, ETag, immutable caching and the permanent URL', async () => {
    const body = { ...base, prompt: 'a red circle', seed: 11 }
    const first = await postImages(key, body)
    expect(first.status).toBe(200)
    expect(first.headers.get('Content-Type')).toBe('image/png')
    expect(first.headers.get('X-Cache')).toBe('MISS')
    expect(first.headers.get('X-Seed')).toBe('11')
    expect(first.headers.get('Cache-Control')).toBe('public, max-age=31536000, immutable')
    expect(first.headers.get('RateLimit-Limit')).toBe('1000')
    const bytes = await bytesOf(first)
    expect([...bytes.slice(1, 4)]).toEqual([0x50, 0x4e, 0x47]) // "PNG"
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
    const sha = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('')
    expect(first.headers.get('ETag')).toBe(`"${sha}"`)

    const second = await postImages(key, body)
    expect(second.headers.get('X-Cache')).toBe('HIT')
    expect(second.headers.get('ETag')).toBe(`"${sha}"`)
    expect(await bytesOf(second)).toEqual(bytes)

    const permanent = await call(`/v1/images/${sha}.png`)
    expect(permanent.status).toBe(200)
    expect(permanent.headers.get('Cache-Control')).toBe('public, max-age=31536000, immutable')
    expect(await bytesOf(permanent)).toEqual(bytes)
    const again = await call(`/v1/images/${sha}.png`) // now possibly from the Cache API
    expect(await bytesOf(again)).toEqual(bytes)

    const notModified = await call(`/v1/images/${sha}.png`, {
      headers: { 'If-None-Match': `"${sha}"` },
    })
    expect(notModified.status).toBe(304)
    expect(notModified.headers.get('ETag')).toBe(`"${sha}"`)
  })

  it('returns JSON with urls, seeds and hashes for Accept: application/json, n images', async () => {
    const res = await postImages(
      key,
      { ...base, prompt: 'two squares', seed: 7, n: 2 },
      {
        Accept: 'application/json',
      },
    )
    expect(res.status).toBe(200)
    const json = (await res.json()) as {
      images: { url: string; seed: number; sha256: string; width: number; height: number }[]
      model: string
      cached: boolean
    }
    expect(json.model).toBe(modelId)
    expect(json.cached).toBe(false)
    expect(json.images.map((i) => i.seed)).toEqual([7, 8])
    for (const img of json.images) {
      expect(img.url).toBe(`https://tti.test/v1/images/${img.sha256}.png`)
      const fetched = await call(new URL(img.url).pathname)
      expect(fetched.status).toBe(200)
    }
    const again = await postImages(
      key,
      { ...base, prompt: 'two squares', seed: 7, n: 2 },
      {
        Accept: 'application/json',
      },
    )
    expect(((await again.json()) as { cached: boolean }).cached).toBe(true)
  })

  it('draws a random seed when none is given and reports it', async () => {
    const res = await postImages(
      key,
      { ...base, prompt: 'a random seed' },
      { Accept: 'application/json' },
    )
    const seed = Number(res.headers.get('X-Seed'))
    expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true)
    const json = (await res.json()) as { images: { seed: number }[] }
    expect(json.images[0].seed).toBe(seed)
    // Replaying the drawn seed is a cache hit.
    const replay = await postImages(key, { ...base, prompt: 'a random seed', seed })
    expect(replay.headers.get('X-Cache')).toBe('HIT')
  })
})

describe('cache key by token ids', () => {
  it('shares one entry between prompts that tokenize identically (case, whitespace, Unicode spaces)', async () => {
    const engine = await installedEngine(env)
    const variants = ['A Blue Square', '  a   blue\tsquare ', 'a\u3000BLUE\u00a0square']
    const ids = variants.map((p) => engine.tokenize(modelId, p).inputIds)
    expect(ids[1]).toEqual(ids[0])
    expect(ids[2]).toEqual(ids[0])

    const first = await postImages(key, { ...base, prompt: variants[0], seed: 21 })
    expect(first.headers.get('X-Cache')).toBe('MISS')
    const bytes = await bytesOf(first)
    for (const prompt of variants.slice(1)) {
      const res = await postImages(key, { ...base, prompt, seed: 21 })
      expect(res.headers.get('X-Cache')).toBe('HIT')
      expect(res.headers.get('X-Request-Key')).toBe(first.headers.get('X-Request-Key'))
      expect(await bytesOf(res)).toEqual(bytes)
    }
  })

  it('keeps prompts that tokenize differently apart (and follows the tokenizer on Unicode forms)', async () => {
    const engine = await installedEngine(env)
    const a = await postImages(key, { ...base, prompt: 'a green square', seed: 22 })
    const b = await postImages(key, { ...base, prompt: 'a green circle', seed: 22 })
    expect(b.headers.get('X-Cache')).toBe('MISS')
    expect(b.headers.get('X-Request-Key')).not.toBe(a.headers.get('X-Request-Key'))

    // NFC vs NFD: they share an entry exactly when the model's tokenizer maps them to the same ids.
    const nfc = 'caf\u00e9 sign'
    const nfd = 'cafe\u0301 sign'
    const same =
      JSON.stringify(engine.tokenize(modelId, nfc).inputIds) ===
      JSON.stringify(engine.tokenize(modelId, nfd).inputIds)
    const x = await postImages(key, { ...base, prompt: nfc, seed: 23 })
    const y = await postImages(key, { ...base, prompt: nfd, seed: 23 })
    expect(x.headers.get('X-Cache')).toBe('MISS')
    expect(y.headers.get('X-Cache')).toBe(same ? 'HIT' : 'MISS')
    expect(y.headers.get('X-Request-Key') === x.headers.get('X-Request-Key')).toBe(same)
  })

  it('keys scheduler aliases by what they build', async () => {
    const a = await postImages(key, { ...base, prompt: 'alias', seed: 24, scheduler: 'euler' })
    const b = await postImages(key, {
      ...base,
      prompt: 'alias',
      seed: 24,
      scheduler: 'EulerDiscreteScheduler',
    })
    expect(a.status).toBe(200)
    expect(b.headers.get('X-Cache')).toBe('HIT')
  })
})

describe('single flight', () => {
  it('50 concurrent identical requests run exactly one generation and get identical bytes', async () => {
    let calls = 0
    wrapGenerate((inner) => async (req, opts) => {
      calls++
      await new Promise((r) => setTimeout(r, 300)) // keep the flight open while the others arrive
      return inner(req, opts)
    })
    const startedBefore = await metric('tti_generations_started_total')
    const body = { ...base, prompt: 'fifty at once', seed: 31 }
    const responses = await Promise.all(Array.from({ length: 50 }, () => postImages(key, body)))
    expect(responses.map((r) => r.status)).toEqual(new Array(50).fill(200))
    const bodies = await Promise.all(responses.map(bytesOf))
    for (const b of bodies) expect(b).toEqual(bodies[0])
    expect(calls).toBe(1)
    expect((await metric('tti_generations_started_total')) - startedBefore).toBe(1)
  })

  it('a failed generation answers every waiter 503 + Retry-After, caches nothing, and is retried', async () => {
    let calls = 0
    wrapGenerate(() => async () => {
      calls++
      await new Promise((r) => setTimeout(r, 100))
      throw new Error('injected engine failure')
    })
    const failedBefore = await metric('tti_generations_failed_total')
    const body = { ...base, prompt: 'doomed', seed: 41 }
    const responses = await Promise.all(Array.from({ length: 5 }, () => postImages(key, body)))
    for (const res of responses) {
      expect(res.headers.get('Retry-After')).toBe('5')
      await expectProblem(res, 503, 'generation-failed')
    }
    // A failed generation is refunded: a key with room for one image can fail and still generate.
    const { key: tight } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const refunded = await postImages(tight, { ...body, seed: 42 })
    expect(refunded.status).toBe(503)
    expect(refunded.headers.get('RateLimit-Remaining')).toBe('1')
    expect(calls).toBe(2)
    expect((await metric('tti_generations_failed_total')) - failedBefore).toBe(2)
    unwrapGenerate()
    const retry = await postImages(key, body)
    expect(retry.status).toBe(200)
    expect(retry.headers.get('X-Cache')).toBe('MISS')
    expect((await postImages(tight, { ...body, seed: 42 })).status).toBe(200)
    expect(await env.INDEX.get(retry.headers.get('X-Request-Key')!)).not.toBe(null)
  })
})

describe('metrics', () => {
  it('counts requests, hits and misses', async () => {
    const hitsBefore = await metric('tti_cache_hits_total')
    await postImages(key, { ...base, prompt: 'a red circle', seed: 11 })
    await eventually(async () => {
      expect(await metric('tti_cache_hits_total')).toBeGreaterThan(hitsBefore)
    })
    const text = await (
      await call('/metrics', { headers: { Authorization: 'Bearer test-admin-token' } })
    ).text()
    expect(text).toContain('# TYPE tti_generation_duration_seconds histogram')
    expect(text).toMatch(
      /tti_requests_total\{method="POST",route="\/v1\/images",status="200"\} \d+/,
    )
  })
})

describe('truncate', () => {
  it('cuts an over-long prompt to the window and keys it by the ids the model keeps', async () => {
    const engine = await installedEngine(env)
    const window = engine.models()[0].maxPromptTokens
    const head = 'red '.repeat(window)
    const a = await postImages(key, { ...base, prompt: `${head} circle`, seed: 61, truncate: true })
    expect(a.status).toBe(200)
    expect(a.headers.get('X-Cache')).toBe('MISS')
    // Differs only past the window: the model sees the same ids, so it is the same image.
    const b = await postImages(key, { ...base, prompt: `${head} square`, seed: 61, truncate: true })
    expect(b.headers.get('X-Cache')).toBe('HIT')
    expect(await bytesOf(b)).toEqual(await bytesOf(a))
  })
})

describe('generation options', () => {
  it('guidance_rescale changes the image and its key; its default keys as if absent; out of range is 422', async () => {
    const body = { ...base, prompt: 'a blue square', seed: 23, guidance_scale: 7.5 }
    const plain = await postImages(key, body)
    expect(plain.status).toBe(200)
    const plainKey = plain.headers.get('X-Request-Key')
    const plainBytes = await bytesOf(plain)

    const atDefault = await postImages(key, { ...body, guidance_rescale: 0 })
    expect(atDefault.headers.get('X-Cache')).toBe('HIT')
    expect(atDefault.headers.get('X-Request-Key')).toBe(plainKey)
    await atDefault.arrayBuffer()

    const rescaled = await postImages(key, { ...body, guidance_rescale: 0.7 })
    expect(rescaled.status).toBe(200)
    expect(rescaled.headers.get('X-Cache')).toBe('MISS')
    expect(rescaled.headers.get('X-Request-Key')).not.toBe(plainKey)
    expect(await bytesOf(rescaled)).not.toEqual(plainBytes)

    const bad = await postImages(key, { ...body, guidance_rescale: 1.5 })
    const problem = await expectProblem(bad, 422, 'validation-error')
    expect(problem.errors).toEqual([
      { field: 'guidance_rescale', detail: 'must be between 0 and 1' },
    ])
  })

  it('lists the options each model honours', async () => {
    const res = await call('/v1/models', { headers: { Authorization: `Bearer ${key}` } })
    const { models } = (await res.json()) as { models: { id: string; options: string[] }[] }
    expect(models.find((m) => m.id === modelId)?.options).toEqual([
      'guidance_rescale',
      'strength',
      'mask_overlay',
      'control_scale',
      'control_start',
      'control_end',
    ])
  })
})

describe('an input the engine refuses', () => {
  it('is a 422 generation-rejected with its reason and no Retry-After, and nothing is cached', async () => {
    let calls = 0
    wrapGenerate(() => async () => {
      calls++
      const e = new Error('width must be a multiple of 16')
      e.name = 'PipelineInputError'
      throw e
    })
    const body = { prompt: 'a rejected circle', seed: 4242, steps: 2 }
    for (let i = 0; i < 2; i++) {
      const res = await postImages(key, body)
      const p = await expectProblem(res, 422, 'generation-rejected')
      expect(p.detail).toContain('multiple of 16')
      expect(res.headers.get('Retry-After')).toBeNull()
    }
    expect(calls).toBe(2)
  })
})

describe('the coordinator keeps no image bytes', () => {
  it('answers its flight with the bytes, and later callers with the index entry only', async () => {
    const engine = await installedEngine(env)
    const info = engine.models()[0]
    const req = {
      model: info.id,
      prompt: 'a blue circle',
      negativePrompt: '',
      seed: 77,
      steps: 2,
      guidanceScale: info.defaults.guidance_scale,
      width: info.defaults.width,
      height: info.defaults.height,
      scheduler: info.defaults.scheduler,
      n: 1,
      truncate: false,
      options: {},
    }
    const key = 'c'.repeat(64)
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(key))
    const first = await stub.run(key, req)
    expect(first.ok && first.source).toBe('generated')
    expect(first.ok && first.bytes?.length).toBe(1)
    const later = await stub.run(key, req)
    expect(later.ok && later.source).toBe('stored')
    expect(later.ok && later.bytes).toBeUndefined()
    expect(later.ok && later.entry).toEqual(first.ok && first.entry)
  })
})
