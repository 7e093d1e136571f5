/**
 * The OpenAPI document at /openapi.json, checked against the real app inside workerd: it is
 * structurally OpenAPI 3.1 (every `$ref` resolves, every operation answers, path templates match
 * their parameters), it documents exactly the routes `createApp` mounts and every problem type,
 * the bounds it states are the ones the API enforces, and real responses conform to it.
 */
import { env } from 'cloudflare:test'
import { Hono } from 'hono'
import { beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app'
import { PROBLEM_TYPE_BASE, PROBLEM_TYPES } from '../../src/problem'
import { admin, call, createKey, postImages } from './helpers'

/** The parts of an OpenAPI document these tests read. */
interface Schema {
  $ref?: string
  type?: string | string[]
  properties?: Record<string, Schema>
  required?: string[]
  additionalProperties?: boolean | Schema
  items?: Schema
  allOf?: Schema[]
  anyOf?: Schema[]
  oneOf?: Schema[]
  enum?: unknown[]
  const?: unknown
  minimum?: number
  maximum?: number
  maxLength?: number
  pattern?: string
  example?: unknown
  default?: unknown
}
interface Parameter {
  name: string
  in: string
  required?: boolean
  schema?: Schema
}
interface Media {
  schema?: Schema
  examples?: Record<string, { value: unknown }>
}
interface Operation {
  operationId?: string
  parameters?: Parameter[]
  requestBody?: { content: Record<string, Media> }
  responses: Record<string, { description: string; content?: Record<string, Media> }>
  security?: Record<string, string[]>[]
}
interface Document {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, unknown> }
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

let doc: Document
let key: string

beforeAll(async () => {
  const res = await call('/openapi.json')
  expect(res.status).toBe(200)
  expect(res.headers.get('Content-Type')).toMatch(/^application\/json/)
  doc = await res.json()
  key = (await createKey({ name: 'openapi' })).key
})

function operations(): { path: string; method: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([method, op]) => ({ path, method, op })),
  )
}

/** Follows a local `$ref` (`#/a/b`) to its target. */
function deref<T>(ref: string): T {
  expect(ref).toMatch(/^#\//)
  const target = ref
    .slice(2)
    .split('/')
    .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], doc)
  if (target === undefined) throw new Error(`unresolved $ref ${ref}`)
  return target as T
}

function resolve(s: Schema): Schema {
  return s.$ref ? resolve(deref<Schema>(s.$ref)) : s
}

/**
 * Checks a value against a document schema; returns what does not conform. Properties a schema
 * does not list are reported too (unless it allows additional ones), so an undocumented
 * response field fails.
 */
function violations(value: unknown, schema: Schema, at = '$', partOfAllOf = false): string[] {
  const s = resolve(schema)
  const out: string[] = []
  // Each part of an allOf may list only some properties (also nested); the whole lists them all.
  if (s.allOf) out.push(...s.allOf.flatMap((p) => violations(value, p, at, true)))
  const alternatives = s.anyOf ?? s.oneOf
  if (alternatives && !alternatives.some((p) => violations(value, p, at).length === 0)) {
    out.push(`${at}: matches no alternative`)
  }
  if (s.const !== undefined && value !== s.const) out.push(`${at}: is not ${String(s.const)}`)
  if (s.enum && !s.enum.includes(value)) out.push(`${at}: ${String(value)} not in enum`)
  const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type]
  const is: Record<string, (v: unknown) => boolean> = {
    object: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
    array: Array.isArray,
    string: (v) => typeof v === 'string',
    integer: Number.isInteger,
    number: (v) => typeof v === 'number',
    boolean: (v) => typeof v === 'boolean',
    null: (v) => v === null,
  }
  if (types.length && !types.some((t) => is[t](value))) {
    return [...out, `${at}: ${JSON.stringify(value)} is not ${types.join('|')}`]
  }
  if (typeof value === 'number') {
    if (s.minimum !== undefined && value < s.minimum) out.push(`${at}: below ${s.minimum}`)
    if (s.maximum !== undefined && value > s.maximum) out.push(`${at}: above ${s.maximum}`)
  }
  if (typeof value === 'string' && s.pattern && !new RegExp(s.pattern).test(value)) {
    out.push(`${at}: does not match ${s.pattern}`)
  }
  if (Array.isArray(value) && s.items) {
    value.forEach((v, i) => out.push(...violations(v, s.items!, `${at}[${i}]`)))
  }
  if (is.object(value) && s.properties) {
    const obj = value as Record<string, unknown>
    for (const r of s.required ?? []) if (!(r in obj)) out.push(`${at}.${r}: missing`)
    for (const [k, v] of Object.entries(obj)) {
      if (s.properties[k]) out.push(...violations(v, s.properties[k], `${at}.${k}`, partOfAllOf))
      else if (!s.additionalProperties && !partOfAllOf) out.push(`${at}.${k}: undocumented`)
    }
  }
  return out
}

/** Asserts that `res` is a documented response of the operation and its body conforms. */
async function expectDocumented(res: Response, path: string, method: string): Promise<unknown> {
  const op = doc.paths[path][method]
  const documented = op.responses[String(res.status)]
  expect(documented, `${method} ${path} answered an undocumented ${res.status}`).toBeDefined()
  const type = res.headers.get('Content-Type')!.split(';')[0]
  const media =
    documented.content?.[type] ??
    Object.entries(documented.content ?? {}).find(([k]) => k.split(';')[0].trim() === type)?.[1]
  expect(media, `${res.status} ${type} is not documented for ${method} ${path}`).toBeDefined()
  const body = type.endsWith('json') ? await res.json() : await res.arrayBuffer()
  if (type.endsWith('json')) expect(violations(body, media!.schema!)).toEqual([])
  return body
}

describe('the document', () => {
  it('is OpenAPI 3.1 with info, security schemes and a Problem schema', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/)
    expect(doc.info.title).toBeTruthy()
    expect(doc.info.version).toBeTruthy()
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['AdminToken', 'ApiKey'])
    expect(doc.components.schemas.Problem).toBeDefined()
  })

  it('resolves every $ref', () => {
    const refs: string[] = []
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk)
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === '$ref' && typeof x === 'string') refs.push(x)
          else walk(x)
        }
      }
    }
    walk(doc)
    expect(refs.length).toBeGreaterThan(10)
    for (const ref of refs) expect(() => deref(ref), ref).not.toThrow()
  })

  it('gives every operation a unique id, a success response and its declared security', () => {
    const ids = operations().map(({ op }) => op.operationId)
    expect(new Set(ids).size).toBe(ids.length)
    for (const { path, method, op } of operations()) {
      const statuses = Object.keys(op.responses)
      expect(
        statuses.some((s) => /^[23]\d\d$/.test(s)),
        `${method} ${path}`,
      ).toBe(true)
      expect(statuses, `${method} ${path} documents internal-error`).toContain('500')
      for (const r of Object.values(op.responses)) expect(r.description).toBeTruthy()
      for (const req of op.security ?? []) {
        for (const name of Object.keys(req))
          expect(doc.components.securitySchemes[name]).toBeDefined()
      }
    }
  })

  it('declares each path template parameter, required, with an example', () => {
    for (const { path, method, op } of operations()) {
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort()
      const params = (op.parameters ?? []).filter((p) => p.in === 'path')
      expect(params.map((p) => p.name).sort(), `${method} ${path}`).toEqual(templated)
      for (const p of params) {
        expect(p.required).toBe(true)
        expect(p.schema?.example, `${method} ${path} {${p.name}}`).toBeDefined()
      }
    }
  })

  it('documents exactly the routes the app mounts', async () => {
    const app = createApp({
      engine: () => Promise.reject(new Error('routes only')),
      rateLimit: { burst: 1, period_seconds: 1 },
    })
    // Handlers, not middleware (`use` registers method ALL); one entry per method and path.
    const routes = [
      ...new Map(
        app.routes.filter((r) => r.method !== 'ALL').map((r) => [`${r.method} ${r.path}`, r]),
      ).values(),
    ]
    expect(routes.length).toBeGreaterThan(10)
    // A probe app with the same paths in the same order routes exactly as the real one does.
    const probe = new Hono()
    for (const r of routes) probe.on(r.method, r.path, (c) => c.text(`${r.method} ${r.path}`))
    const matched = new Set<string>()
    for (const { path, method, op } of operations()) {
      const sample = path.replace(/\{([^}]+)\}/g, (_, name: string) =>
        String(op.parameters!.find((p) => p.in === 'path' && p.name === name)!.schema!.example),
      )
      const res = await probe.request(sample, { method: method.toUpperCase() })
      expect(res.status, `documented ${method} ${path} (${sample}) is not a route`).toBe(200)
      matched.add(await res.text())
    }
    const undocumented = routes.map((r) => `${r.method} ${r.path}`).filter((r) => !matched.has(r))
    expect(undocumented).toEqual([])
  })

  it('lists every problem type, and each is answered by some operation', () => {
    const all = Object.keys(PROBLEM_TYPES).map((s) => PROBLEM_TYPE_BASE + s)
    expect([...resolve(doc.components.schemas.Problem).properties!.type.enum!].sort()).toEqual(
      [...all].sort(),
    )
    const answered = new Set<string>()
    for (const { op } of operations()) {
      for (const [status, r] of Object.entries(op.responses)) {
        for (const media of Object.values(r.content ?? {})) {
          for (const [slug, ex] of Object.entries(media.examples ?? {})) {
            expect(PROBLEM_TYPES[slug as keyof typeof PROBLEM_TYPES]?.status).toBe(Number(status))
            answered.add(PROBLEM_TYPE_BASE + slug)
            expect(ex.value).toBeTruthy()
          }
        }
      }
    }
    expect([...answered].sort()).toEqual([...all].sort())
  })

  it('is served with CORS for other origins, identically each time', async () => {
    const res = await call('/openapi.json')
    expect(res.headers.get('Access-Control-Allow-Origin')).toBe('*')
    expect(await res.json()).toEqual(doc)
  })
})

describe('documented bounds are enforced', () => {
  const imageRequest = () => resolve(doc.components.schemas.ImageRequest)
  const fieldsOf = async (res: Response) => {
    const body = await expectDocumented(res, '/v1/images', 'post')
    return (body as { errors?: { field: string }[] }).errors?.map((e) => e.field)
  }

  it('a body the document calls invalid is refused with 422 naming the field', async () => {
    const schema = imageRequest()
    expect(schema.additionalProperties).toBe(false)
    expect(schema.required).toEqual(['prompt'])
    expect(await fieldsOf(await postImages(key, {}))).toEqual(['prompt'])
    expect(await fieldsOf(await postImages(key, { prompt: 'a', colour: 'red' }))).toEqual([
      'colour',
    ])
    const bounded = Object.entries(schema.properties!).filter(
      ([, p]) => resolve(p).minimum !== undefined || resolve(p).maximum !== undefined,
    )
    expect(bounded.map(([k]) => k).sort()).toEqual(
      [
        'guidance_rescale',
        'guidance_scale',
        'height',
        'n',
        'output_compression',
        'seed',
        'steps',
        'width',
        'strength',
        'control_scale',
        'control_start',
        'control_end',
      ].sort(),
    )
    for (const [field, p] of bounded) {
      const { minimum, maximum, type } = resolve(p)
      if (minimum !== undefined) {
        const below = minimum - 1
        expect(
          await fieldsOf(await postImages(key, { prompt: 'a', [field]: below })),
          field,
        ).toEqual([field])
      }
      if (maximum !== undefined) {
        const above = maximum + 1
        expect(
          await fieldsOf(await postImages(key, { prompt: 'a', [field]: above })),
          field,
        ).toEqual([field])
      }
      if (type === 'integer') {
        const frac = (minimum ?? 0) + 1.5
        expect(
          await fieldsOf(await postImages(key, { prompt: 'a', [field]: frac })),
          field,
        ).toEqual([field])
      }
    }
    for (const [field, p] of Object.entries(schema.properties!)) {
      const wrong = resolve(p).type === 'string' || resolve(p).enum ? 7 : 'seven'
      const body = field === 'prompt' ? { prompt: wrong } : { prompt: 'a', [field]: wrong }
      expect(await fieldsOf(await postImages(key, body)), field).toEqual([field])
    }
  })

  it("the document's own example body is accepted and the JSON response conforms", async () => {
    const body = Object.fromEntries(
      Object.entries(imageRequest().properties!)
        .filter(([, p]) => resolve(p).example !== undefined)
        .map(([k, p]) => [k, resolve(p).example]),
    )
    expect(body.prompt).toBeTruthy()
    const res = await postImages(key, body, { Accept: 'application/json' })
    expect(res.status).toBe(200)
    const out = (await expectDocumented(res, '/v1/images', 'post')) as {
      images: { sha256: string }[]
    }
    const png = await call(`/v1/images/${out.images[0].sha256}.png`)
    await expectDocumented(png, '/v1/images/{sha256}.png', 'get')
    const notModified = await call(`/v1/images/${out.images[0].sha256}.png`, {
      headers: { 'If-None-Match': `"${out.images[0].sha256}"` },
    })
    expect(notModified.status).toBe(304)
    expect(doc.paths['/v1/images/{sha256}.png'].get.responses['304']).toBeDefined()
  })

  it('POST /v1/keys: documented limits of name, scopes and rate_limit are enforced', async () => {
    const schema = resolve(doc.components.schemas.CreateKeyRequest)
    const props = schema.properties!
    const post = (body: unknown) =>
      admin('/v1/keys', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      })
    const fields = async (res: Response) =>
      (
        (await expectDocumented(res, '/v1/keys', 'post')) as { errors: { field: string }[] }
      ).errors.map((e) => e.field)
    const maxName = resolve(props.name).maxLength!
    expect(await fields(await post({ name: 'x'.repeat(maxName + 1) }))).toEqual(['name'])
    const scopeEnum = resolve(resolve(props.scopes).items!).enum!
    expect(await fields(await post({ scopes: [...scopeEnum, 'admin'] }))).toEqual(['scopes'])
    const rl = resolve(props.rate_limit).properties!
    const over = { burst: rl.burst.maximum! + 1, period_seconds: rl.period_seconds.maximum! }
    expect(await fields(await post({ rate_limit: over }))).toEqual(['rate_limit'])
    const ok = await post({
      name: 'x'.repeat(maxName),
      scopes: scopeEnum,
      rate_limit: { burst: 1, period_seconds: 1 },
    })
    expect(ok.status).toBe(201)
    await expectDocumented(ok, '/v1/keys', 'post')
  })
})

describe('real responses conform to the document', () => {
  it('GET /v1/models, /healthz and /v1/keys', async () => {
    const models = await call('/v1/models', { headers: { Authorization: `Bearer ${key}` } })
    await expectDocumented(models, '/v1/models', 'get')
    await expectDocumented(await call('/healthz'), '/healthz', 'get')
    await expectDocumented(await admin('/v1/keys'), '/v1/keys', 'get')
    const metrics = await admin('/metrics')
    expect(Object.keys(doc.paths['/metrics'].get.responses['200'].content!)).toContain(
      metrics.headers.get('Content-Type'),
    )
  })

  it('problems are documented for the operation that answers them', async () => {
    await expectDocumented(await call('/v1/models'), '/v1/models', 'get') // 401
    await expectDocumented(await postImages(key, '{"prompt":'), '/v1/images', 'post') // 400
    await expectDocumented(
      await postImages(key, { prompt: 'a', n: 2 }, { Accept: 'image/png' }),
      '/v1/images',
      'post',
    ) // 406
    await expectDocumented(
      await postImages(key, 'x', { 'Content-Type': 'text/plain' }),
      '/v1/images',
      'post',
    ) // 415
    const gone = await admin('/v1/keys/0123456789abcdef', { method: 'DELETE' })
    await expectDocumented(gone, '/v1/keys/{id}', 'delete') // 404
    const openai = await call('/v1/images/generations', {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'a', size: 'big' }),
    })
    await expectDocumented(openai, '/v1/images/generations', 'post') // 422, OpenAI envelope
  })

  it('embeds, batches and jobs', async () => {
    const auth = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }
    const minted = await call('/v1/embeds', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ prompt: 'a red circle', seed: 3, origins: ['https://example.com'] }),
    })
    const { url } = (await expectDocumented(minted, '/v1/embeds', 'post')) as { url: string }
    const tampered = url.replace(/\.([^.]+)\.png$/, '.AAAA.png')
    await expectDocumented(await call(new URL(tampered).pathname), '/v1/embeds/{token}.png', 'get') // 403 embed-signature-invalid
    // An item the model refuses is reported in the answer, not as the batch's status.
    const batch = await call('/v1/batch', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ items: [{ prompt: 'a', steps: 100_000 }] }),
    })
    const result = (await expectDocumented(batch, '/v1/batch', 'post')) as {
      errors: Record<string, unknown>
    }
    expect(Object.keys(result.errors)).toEqual(['0'])
    const job = await call(`/v1/jobs/${'f'.repeat(64)}`, { headers: auth })
    await expectDocumented(job, '/v1/jobs/{id}', 'get') // 404
  })

  it('Prefer: respond-async answers a documented 202 whose job polls to a documented result', async () => {
    const res = await postImages(
      key,
      { prompt: 'a blue square', seed: 9090, steps: 2 },
      {
        Prefer: 'respond-async',
      },
    )
    const accepted = (await expectDocumented(res, '/v1/images', 'post')) as { id: string }
    // A prompt and seed no other test uses: a miss, so the generation runs as a job.
    expect(res.status).toBe(202)
    expect(res.headers.get('Location')).toBe(`/v1/jobs/${accepted.id}`)
    let job: { status: string }
    do {
      const poll = await call(res.headers.get('Location')!, {
        headers: { Authorization: `Bearer ${key}` },
      })
      job = (await expectDocumented(poll, '/v1/jobs/{id}', 'get')) as { status: string }
      if (job.status === 'running') await new Promise((r) => setTimeout(r, 200))
    } while (job.status === 'running')
    expect(job.status).toBe('succeeded')
  })
})

describe('/docs', () => {
  it('is one self-contained HTML page whose CSP allows only its own script', async () => {
    const res = await call('/docs')
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toMatch(/^text\/html/)
    const csp = res.headers.get('Content-Security-Policy')!
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/)
    expect(csp).toContain("connect-src 'self'")
    const html = await res.text()
    // Nothing is loaded from another origin: no external scripts, styles or fonts.
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//)
    expect(html).toContain("fetch('/openapi.json')")
  })
})

/**
 * A seeded fuzz run derived from the document: requests built from every operation's
 * parameters and body schemas (mostly valid values, with wrong types, out-of-range numbers,
 * unknown fields, long strings, bad keys, other methods and content types mixed in). The app
 * must answer each with a documented response whose body conforms, and never with a 5xx.
 * A longer run: `npm run fuzz` (1,000 requests; `FUZZ_REQUESTS=20000 FUZZ_SEED=7 npm run fuzz`).
 */
describe('a seeded fuzz run derived from the document', () => {
  const fuzzEnv = env as unknown as { FUZZ_REQUESTS?: string; FUZZ_SEED?: string }
  const REQUESTS = Number(fuzzEnv.FUZZ_REQUESTS || 600)
  const SEED = Number(fuzzEnv.FUZZ_SEED || 20261201)

  /** mulberry32: a small seeded generator, so a failure replays with its seed. */
  function prng(seed: number) {
    let a = seed >>> 0
    return () => {
      a = (a + 0x6d2b79f5) >>> 0
      let t = a
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }

  it(
    `answers ${REQUESTS} generated requests with documented responses and no 5xx`,
    async () => {
      const rand = prng(SEED)
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
      const fuzzKey = (await createKey({ rate_limit: { burst: 100_000, period_seconds: 60 } })).key
      const junk = () =>
        pick<unknown>([null, 42, -1, 1e308, 'x', '', true, [], {}, 'a'.repeat(3000), [1, 'b']])
      const sample = (schema: Schema, depth = 0): unknown => {
        const s = resolve(schema)
        if (rand() < 0.04) return junk()
        const alt = s.oneOf ?? s.anyOf
        if (alt) return sample(pick(alt), depth)
        if (s.allOf)
          return Object.assign(
            {},
            ...s.allOf.map((p) => sample(p, depth) as object).filter(Boolean),
          )
        if (s.const !== undefined) return s.const
        if (s.enum) return pick(s.enum)
        if (s.example !== undefined && rand() < 0.5) return s.example
        const type = Array.isArray(s.type) ? pick(s.type) : s.type
        if (type === 'object' || s.properties) {
          if (depth > 3) return {}
          const out: Record<string, unknown> = {}
          for (const [k, p] of Object.entries(s.properties ?? {}))
            if (s.required?.includes(k) ? rand() < 0.97 : rand() < 0.35)
              out[k] = sample(p, depth + 1)
          if (rand() < 0.03) out.unexpected_field = junk()
          return out
        }
        if (type === 'array')
          return Array.from({ length: Math.floor(rand() * 3) }, () =>
            sample(s.items ?? {}, depth + 1),
          )
        if (type === 'integer' || type === 'number') {
          const lo = s.minimum ?? 0
          const hi = s.maximum ?? lo + 100
          const r = rand()
          // Mostly small values (a valid request generates: keep it cheap), some anywhere, a few out.
          const v =
            r < 0.75
              ? lo + rand() * Math.min(4, hi - lo)
              : r < 0.95
                ? lo + rand() * (hi - lo)
                : pick([lo - 1, hi + 1])
          return type === 'integer' ? Math.round(v) : v
        }
        if (type === 'boolean') return rand() < 0.5
        if (type === 'string') {
          if (rand() < 0.03) return 'é'.repeat(2500)
          return pick([
            'a red circle',
            'x',
            '',
            'tiny-shapes',
            'euler',
            '64x64',
            'url',
            crypto.randomUUID(),
          ])
        }
        return junk()
      }
      const ops = operations()
      let generated = 0
      const statuses = new Map<number, number>()
      for (let i = 0; i < REQUESTS; i++) {
        const { path, method, op } = pick(ops)
        let url = path
        for (const p of op.parameters ?? [])
          if (p.in === 'path') {
            const v =
              rand() < 0.5
                ? sample(p.schema ?? {})
                : [...crypto.getRandomValues(new Uint8Array(32))]
                    .map((b) => b.toString(16).padStart(2, '0'))
                    .join('')
            url = url.replace(`{${p.name}}`, encodeURIComponent(String(v)))
          }
        const headers: Record<string, string> = {}
        const schemes = (op.security ?? []).flatMap((s) => Object.keys(s))
        const r = rand()
        if (schemes.includes('AdminToken'))
          headers.Authorization = r < 0.3 ? 'Bearer test-admin-token' : 'Bearer nope'
        else if (schemes.includes('ApiKey'))
          headers.Authorization =
            r < 0.85 ? `Bearer ${fuzzKey}` : pick(['', 'tti_x', `Bearer ${fuzzKey}x`])
        if (rand() < 0.3)
          headers.Accept = pick([
            'application/json',
            'image/png',
            'text/event-stream',
            '*/*',
            'text/html',
          ])
        let body: BodyInit | undefined
        const content = op.requestBody?.content ?? {}
        const types = Object.keys(content)
        const verb = rand() < 0.93 ? method : pick(['get', 'post', 'put', 'delete', 'patch'])
        if (types.length && verb !== 'get') {
          const type = rand() < 0.92 ? pick(types) : pick(['text/plain', 'application/xml'])
          const value = content[type]?.schema ? sample(content[type].schema!) : 'x'
          headers['Content-Type'] = type
          if (type === 'multipart/form-data' && value && typeof value === 'object') {
            const form = new FormData()
            for (const [k, v] of Object.entries(value))
              form.append(k, typeof v === 'string' ? v : JSON.stringify(v))
            body = form
            delete headers['Content-Type']
          } else
            body =
              typeof value === 'string' && !type.includes('json') ? value : JSON.stringify(value)
        }
        const res = await call(url, { method: verb.toUpperCase(), headers, body })
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        const what = `#${i} (seed ${SEED}) ${verb.toUpperCase()} ${url} → ${res.status}`
        if (res.status >= 500) expect.fail(`${what}: ${await res.text()}`)
        if (res.status === 200 && method === 'post') generated++
        const openaiRoute =
          url.startsWith('/v1/images/generations') || url.startsWith('/v1/images/edits')
        if (res.status >= 400 && !openaiRoute)
          expect(res.headers.get('Content-Type'), what).toBe('application/problem+json')
        if (verb === method && res.status !== 404 && res.status !== 405)
          await expectDocumented(res, path, method)
        else await res.arrayBuffer()
      }
      console.log(
        `fuzz: ${REQUESTS} requests, seed ${SEED}, ${generated} successful POSTs, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
      )
      expect(statuses.size).toBeGreaterThan(4)
      // Every request waits for its answer, and the generating ones take a while.
    },
    Math.max(600_000, REQUESTS * 1_000),
  )
})
