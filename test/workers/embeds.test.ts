/**
 * Signed embed URLs through the real app in workerd: minting (scope, validation, canonical
 * payloads), serving (miss charged to the embedding key, then cache hits, 304), and every
 * refusal as a problem: tampered payload, wrong signature, expired, disallowed origin, revoked.
 */
import { env } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import { viewerOrigin } from '../../src/embeds/embeds'
import {
  decodeToken,
  fromBase64url,
  MAX_TOKEN_LENGTH,
  signToken,
  verifySignature,
  type EmbedPayload,
} from '../../src/embeds/token'
import type { ApiKeyRecord } from '../../src/keys/api-keys'
import { base64url } from '../../src/util'
import { admin, call, createKey, expectProblem } from './helpers'

/** POSTs a body to /v1/embeds with a key. */
function mint(key: string | undefined, body: unknown): Promise<Response> {
  return call('/v1/embeds', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(key ? { Authorization: `Bearer ${key}` } : {}),
    },
    body: JSON.stringify(body),
  })
}

interface Minted {
  url: string
  html: string
  key_id: string
  params: Record<string, unknown>
  expires_at: string | null
  origins: string[] | null
}

async function mintOk(key: string, body: Record<string, unknown>): Promise<Minted> {
  const res = await mint(key, body)
  expect(res.status).toBe(200)
  return res.json()
}

/** GETs an embed URL (absolute, on the test origin) with optional page headers. */
function view(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return call(new URL(url).pathname, { headers })
}

/** The stored record of a key (the test reads KV directly, as only the server can). */
async function record(id: string): Promise<ApiKeyRecord> {
  return (await env.KEYS.get<ApiKeyRecord>(`keys/${id}`, 'json'))!
}

/** Signs a payload as the server would, with the key's stored embed secret. */
async function forge(id: string, payload: Omit<EmbedPayload, 'v' | 'k'>): Promise<string> {
  const token = await signToken((await record(id)).embed_secret!, { v: 1, k: id, ...payload })
  return `https://tti.test/v1/embeds/${token}.png`
}

const tokenOf = (url: string) => new URL(url).pathname.split('/').pop()!.slice(0, -4)
const bytesOf = async (res: Response) => new Uint8Array(await res.arrayBuffer())

let owner: { id: string; key: string }

beforeAll(async () => {
  owner = await createKey({ name: 'embeds', rate_limit: { burst: 1000, period_seconds: 60 } })
})

describe('POST /v1/embeds', () => {
  it('needs a key with the embed scope', async () => {
    await expectProblem(await mint(undefined, { prompt: 'x', seed: 1 }), 401, 'unauthorized')
    const { key } = await createKey({ scopes: ['generate', 'read'] })
    const problem = await expectProblem(
      await mint(key, { prompt: 'x', seed: 1 }),
      403,
      'insufficient-scope',
    )
    expect(problem.required_scope).toBe('embed')
  })

  it('rejects invalid parameters with 422 naming each field, before anything is signed', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ prompt: 'x' }, 'seed'],
      [{ prompt: 'x', seed: 1, n: 2 }, 'n'],
      [{ prompt: 'x', seed: 1, steps: 10_000 }, 'steps'],
      [{ prompt: 'x', seed: 1, steps: 0 }, 'steps'],
      [{ prompt: 'x', seed: 1, scheduler: 'nope' }, 'scheduler'],
      [{ prompt: 'x', seed: 1, expires_in: 0 }, 'expires_in'],
      [{ prompt: 'x', seed: 1, origins: ['https://a.example/path'] }, 'origins.0'],
      [{ prompt: 'x', seed: 1, origins: ['*'] }, 'origins.0'],
      [{ prompt: 'x', seed: 1, origins: [] }, 'origins'],
    ]
    for (const [body, field] of cases) {
      const problem = await expectProblem(await mint(owner.key, body), 422, 'validation-error')
      const fields = (problem.errors as { field: string }[]).map((e) => e.field)
      expect({ body, fields }).toEqual({ body, fields: expect.arrayContaining([field]) })
    }
    // Model bounds read as on POST /v1/images, whichever side of them the value falls.
    const low = await expectProblem(
      await mint(owner.key, { prompt: 'x', seed: 1, steps: 0 }),
      422,
      'validation-error',
    )
    expect(low.detail).toMatch(/^steps: must be between 1 and \d+$/)
  })

  it('answers the URL, an <img> snippet and canonical parameters; equal requests, equal URLs', async () => {
    const a = await mintOk(owner.key, { prompt: 'a red circle', seed: 60_001 })
    const models = await call('/v1/models', { headers: { Authorization: `Bearer ${owner.key}` } })
    const [model] = ((await models.json()) as { models: { id: string; defaults: object }[] }).models
    // Defaults filled in: the URL keeps naming this image if a default changes later.
    expect(a.params).toEqual({
      prompt: 'a red circle',
      seed: 60_001,
      ...model.defaults,
      model: model.id,
    })
    expect(a).toMatchObject({ key_id: owner.id, expires_at: null, origins: null })
    expect(a.url).toMatch(/^https:\/\/tti\.test\/v1\/embeds\/[\w-]+\.[\w-]{43}\.png$/)
    expect(a.html).toBe(
      `<img src="${a.url}" width="${a.params.width}" height="${a.params.height}" alt="a red circle">`,
    )
    // The same request spelled out in full is the same payload, hence the same URL.
    const b = await mintOk(owner.key, { ...a.params })
    expect(b.url).toBe(a.url)
    // The payload names the key but holds nothing secret.
    const payload = atob(tokenOf(a.url).split('.')[0].replace(/-/g, '+').replace(/_/g, '/'))
    expect(JSON.parse(payload)).toEqual({ v: 1, k: owner.id, p: a.params })
  })

  it('keeps the embed secret out of every answer and apart from the key', async () => {
    const created = await createKey({ name: 'secret-check' })
    const stored = await record(created.id)
    expect(stored.embed_secret).toMatch(/^[\w-]{43}$/)
    expect(stored.embed_secret).not.toBe(created.key.slice(4))
    expect(JSON.stringify(created)).not.toContain(stored.embed_secret)
    const listed = await (await admin('/v1/keys')).text()
    expect(listed).not.toContain('embed_secret')
    expect(listed).not.toContain(stored.embed_secret)
  })
})

describe('GET /v1/embeds/{token}.png', () => {
  it('generates on the first view (charged to the key), then serves from the cache', async () => {
    const { id, key } = await createKey({ rate_limit: { burst: 1, period_seconds: 3600 } })
    const { url } = await mintOk(key, { prompt: 'a blue square', seed: 60_011, steps: 2 })

    const first = await view(url)
    expect(first.status).toBe(200)
    expect(first.headers.get('Content-Type')).toBe('image/png')
    expect(first.headers.get('X-Cache')).toBe('MISS')
    expect(first.headers.get('RateLimit-Remaining')).toBe('0')
    expect(first.headers.get('Access-Control-Allow-Origin')).toBe('*')
    expect(first.headers.get('Cross-Origin-Resource-Policy')).toBe('cross-origin')
    expect(first.headers.get('Cache-Control')).toBe('public, max-age=86400')
    const png = await bytesOf(first)
    expect([...png.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47])

    // The key's quota is now empty, but a cache hit costs nothing.
    const second = await view(url)
    expect(second.status).toBe(200)
    expect(second.headers.get('X-Cache')).toBe('HIT')
    expect(await bytesOf(second)).toEqual(png)

    // Same bytes as the permanent URL it points at.
    const permanent = await call(second.headers.get('Content-Location')!)
    expect(await bytesOf(permanent)).toEqual(png)
    const etag = second.headers.get('ETag')!
    const notModified = await view(url, { 'If-None-Match': etag })
    expect(notModified.status).toBe(304)

    // Another image on the same key is a miss the empty quota refuses.
    const other = await mintOk(key, { prompt: 'a blue square', seed: 60_012, steps: 2 })
    await expectProblem(await view(other.url), 429, 'rate-limited')
    expect(id).toBeTruthy()
  })

  it('refuses a tampered payload, a wrong signature and malformed tokens with 403', async () => {
    const { url } = await mintOk(owner.key, { prompt: 'a green dot', seed: 60_021, steps: 1 })
    const [payload, mac] = tokenOf(url).split('.')
    // Change what the payload asks for (another seed), keeping the signature.
    const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/')))
    claims.p.seed = 60_022
    const tampered = base64url(new TextEncoder().encode(JSON.stringify(claims)))
    const other = await createKey({ name: 'other' })
    const foreign = await mintOk(other.key, { prompt: 'a green dot', seed: 60_021, steps: 1 })
    const foreignMac = tokenOf(foreign.url).split('.')[1]
    const flipped = mac.slice(0, -2) + (mac.at(-2) === 'A' ? 'B' : 'A') + mac.at(-1)

    for (const token of [
      `${tampered}.${mac}`, // altered parameters
      `${payload}.${foreignMac}`, // signed by another key's secret
      `${payload}.${flipped}`, // one bit off
      `${payload}`, // no signature
      `${payload}.${mac}.x`, // extra segment
      `${payload}.${mac}=`, // padding: not the one canonical spelling
      'not-a-token',
    ]) {
      const res = await call(`/v1/embeds/${token}.png`)
      expect(res.headers.get('Cache-Control')).toBe('no-store')
      const problem = await expectProblem(res, 403, 'embed-signature-invalid')
      expect(problem.instance).toBe(`/v1/embeds/${token}.png`)
    }
    // A payload naming a key that does not exist cannot verify either.
    const ghost = { ...claims, k: '0123456789abcdef', p: { ...claims.p, seed: 60_021 } }
    const ghostPayload = base64url(new TextEncoder().encode(JSON.stringify(ghost)))
    await expectProblem(
      await call(`/v1/embeds/${ghostPayload}.${mac}.png`),
      403,
      'embed-signature-invalid',
    )
    // The untouched URL still works.
    expect((await view(url)).status).toBe(200)
  })

  it('answers 410 once expired, and is never cached past its expiry', async () => {
    const expired = await forge(owner.id, {
      p: { prompt: 'late', seed: 60_031, steps: 1 },
      exp: Math.floor(Date.now() / 1000) - 5,
    })
    const res = await view(expired)
    expect(res.headers.get('Cache-Control')).toBe('no-store')
    const problem = await expectProblem(res, 410, 'embed-expired')
    expect(problem.expired_at).toMatch(/^\d{4}-\d\d-\d\dT/)

    const minted = await mintOk(owner.key, {
      prompt: 'late',
      seed: 60_031,
      steps: 1,
      expires_in: 600,
    })
    expect(Date.parse(minted.expires_at!) - Date.now()).toBeGreaterThan(590_000)
    const live = await view(minted.url)
    expect(live.status).toBe(200)
    const maxAge = Number(live.headers.get('Cache-Control')!.match(/max-age=(\d+)/)![1])
    expect(maxAge).toBeGreaterThan(590)
    expect(maxAge).toBeLessThanOrEqual(600)
  })

  it('serves allowed origins (Origin or Referer) with CORS, and refuses others with 403', async () => {
    const minted = await mintOk(owner.key, {
      prompt: 'a yellow triangle',
      seed: 60_041,
      steps: 1,
      origins: ['https://blog.example', 'HTTP://LOCALHOST:8080/'],
    })
    expect(minted.origins).toEqual(['http://localhost:8080', 'https://blog.example'])

    const byOrigin = await view(minted.url, { Origin: 'https://blog.example' })
    expect(byOrigin.status).toBe(200)
    expect(byOrigin.headers.get('Access-Control-Allow-Origin')).toBe('https://blog.example')
    expect(byOrigin.headers.get('Vary')).toBe('Origin, Referer')
    expect(byOrigin.headers.get('Cache-Control')).toBe('private, max-age=86400')

    // The restriction covers the image: no content address to lift onto other pages.
    expect(byOrigin.headers.get('Content-Location')).toBeNull()
    expect(byOrigin.headers.get('ETag')).toBeNull()
    expect(byOrigin.headers.get('X-Request-Key')).toBeNull()
    const sha = [...new Uint8Array(await crypto.subtle.digest('SHA-256', await bytesOf(byOrigin)))]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('')
    const guess = await view(minted.url, {
      Origin: 'https://blog.example',
      'If-None-Match': `"${sha}"`,
    })
    expect(guess.status).toBe(200)
    await guess.arrayBuffer()

    // An <img> sends no Origin, only the page in Referer: allowed, without CORS headers.
    const byReferer = await view(minted.url, { Referer: 'http://localhost:8080/posts/1.html' })
    expect(byReferer.status).toBe(200)
    expect(byReferer.headers.get('Access-Control-Allow-Origin')).toBeNull()

    for (const headers of [
      { Origin: 'https://evil.example' },
      { Referer: 'https://evil.example/page' },
      { Origin: 'null' },
      { Origin: 'https://evil.example', Referer: 'https://blog.example/' }, // Origin decides
      {}, // neither: refused, else any page could hide its Referer and show it
    ]) {
      const res = await view(minted.url, headers as Record<string, string>)
      expect(res.headers.get('Access-Control-Allow-Origin')).toBeNull()
      await expectProblem(res, 403, 'embed-origin-not-allowed')
    }
  })

  it('dies with its key: revoked in the Durable Object even while KV lags, secret deleted', async () => {
    const { id, key } = await createKey({ name: 'short-lived' })
    const { url } = await mintOk(key, { prompt: 'a red circle', seed: 60_051, steps: 1 })
    expect((await view(url)).status).toBe(200)
    const before = await env.KEYS.get(`keys/${id}`)

    expect((await admin(`/v1/keys/${id}`, { method: 'DELETE' })).status).toBe(200)
    // Its secret is gone, so its URLs read like forged ones: a key id alone tells nothing.
    await expectProblem(await view(url), 403, 'embed-signature-invalid')
    expect((await record(id)).embed_secret).toBeUndefined()
    const [payload] = tokenOf(url).split('.')
    const forged = `https://tti.test/v1/embeds/${payload}.${'A'.repeat(43)}.png`
    await expectProblem(await view(forged), 403, 'embed-signature-invalid')
    // A KV replica that still holds the old record (secret included): the MAC holds, and the
    // Durable Object says revoked.
    await env.KEYS.put(`keys/${id}`, before!)
    await expectProblem(await view(url), 403, 'key-revoked')
  })

  it('refuses to mint a URL longer than its GET route opens', async () => {
    const res = await mint(owner.key, {
      prompt: 'a red circle '.repeat(150),
      negative_prompt: 'blurry '.repeat(280),
      seed: 60_071,
      truncate: true,
    })
    const problem = await expectProblem(res, 422, 'validation-error')
    expect(problem.errors).toEqual([
      {
        field: 'prompt',
        detail: expect.stringMatching(/embed token of \d+ characters; the limit is 4096/),
      },
    ])
  })

  it('answers 422 when a signed payload no longer fits the model', async () => {
    const url = await forge(owner.id, { p: { prompt: 'x', seed: 60_061, steps: 10_000 } })
    const problem = await expectProblem(await view(url), 422, 'validation-error')
    expect((problem.errors as { field: string }[])[0].field).toBe('steps')
  })
})

describe('embed tokens', () => {
  const secret = base64url(new Uint8Array(32).fill(7))
  const payload: EmbedPayload = { v: 1, k: '0123456789abcdef', p: { prompt: 'x', seed: 1 } }

  it('verify what they signed, with that secret only', async () => {
    const token = await signToken(secret, payload)
    const decoded = decodeToken(token)!
    expect(decoded.payload).toEqual(payload)
    expect(await verifySignature(secret, decoded)).toBe(true)
    const other = base64url(new Uint8Array(32).fill(8))
    expect(await verifySignature(other, decoded)).toBe(false)
    // Deterministic: equal payloads, equal tokens.
    expect(await signToken(secret, { ...payload })).toBe(token)
  })

  it('decode only two canonical base64url segments of JSON, within the length limit', async () => {
    const [body, mac] = (await signToken(secret, payload)).split('.')
    expect(decodeToken(`${body}.${mac.slice(0, -1)}`)).toBeNull() // 31 bytes, not 32
    expect(decodeToken(`${body}.${mac}.`)).toBeNull()
    expect(decodeToken(`${base64url(new TextEncoder().encode('{nope'))}.${mac}`)).toBeNull()
    expect(decodeToken(`${body}${'A'.repeat(MAX_TOKEN_LENGTH)}.${mac}`)).toBeNull()
    expect(fromBase64url('AQ')).toEqual(new Uint8Array([1]))
    expect(fromBase64url('AR')).toBeNull() // same byte, non-zero padding bits
    expect(fromBase64url('AQ==')).toBeNull()
    expect(fromBase64url('A+/')).toBeNull()
  })

  it("take the page's origin from Origin, else from Referer", () => {
    expect(viewerOrigin({ origin: 'https://a.example', referer: 'https://b.example/x' })).toBe(
      'https://a.example',
    )
    expect(viewerOrigin({ referer: 'https://b.example:8443/x?y#z' })).toBe('https://b.example:8443')
    expect(viewerOrigin({ origin: 'null', referer: 'https://b.example/' })).toBe(
      'https://b.example',
    )
    expect(viewerOrigin({ referer: 'not a url' })).toBeNull()
    expect(viewerOrigin({})).toBeNull()
  })
})
