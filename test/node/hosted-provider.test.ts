/**
 * The hosted-provider backend on the real local stack: the worker (wrangler, local KV, R2 and
 * Durable Objects) configured with `HF_TOKEN`, `HF_MODELS` and `HF_ENDPOINT_URL`, forwarding
 * through the real `@huggingface/inference` client to a node:http server on localhost that
 * imitates a Hugging Face Inference Endpoint (the only stand-in: it is the remote service). The
 * server counts calls, so cache hits and single flight are checked where the provider sees them.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodePng } from '../../src/pipeline/png'
import { PROBLEM_TYPE_BASE } from '../../src/problem'
import { startWorker, type RunningWorker } from './worker-server'

const HF_MODEL = 'stabilityai/sd-turbo'
const MODEL = `hf:${HF_MODEL}`
const TOKEN = `hf_${randomBytes(12).toString('hex')}`
const ENDPOINT_PATH = `/models/${HF_MODEL}`
const TIMEOUT_MS = 3000

/** How the imitated provider answers the next calls. */
type Mode = 'png' | 'error' | 'overloaded' | 'garbage' | 'jpeg' | 'hang'

interface ProviderCall {
  method: string
  path: string
  headers: IncomingHttpHeaders
  body: { inputs: string; parameters: Record<string, unknown> }
}

const provider = {
  mode: 'png' as Mode,
  delayMs: 0,
  calls: [] as ProviderCall[],
  /** PNG bytes sent, by seed. */
  sent: new Map<number, Buffer>(),
}

/** A real PNG of the requested size whose colour depends on the seed, as a provider would make. */
function providerPng(width: number, height: number, seed: number): Uint8Array {
  const data = new Uint8Array(width * height * 3)
  for (let i = 0; i < data.length; i += 3) {
    data[i] = (seed * 37) & 255
    data[i + 1] = (seed * 91 + i) & 255
    data[i + 2] = 128
  }
  return encodePng({ width, height, data })
}

let server: Server
let worker: RunningWorker
let key: string

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    provider.calls.push({
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
    })
    const { parameters } = provider.calls.at(-1)!.body
    if (provider.mode === 'hang') return // never answers; the worker's deadline must fire
    if (provider.delayMs) await new Promise((r) => setTimeout(r, provider.delayMs))
    switch (provider.mode) {
      case 'png': {
        const seed = parameters.seed as number
        const png = Buffer.from(
          providerPng(parameters.width as number, parameters.height as number, seed),
        )
        provider.sent.set(seed, png)
        res.writeHead(200, { 'content-type': 'image/png' }).end(png)
        return
      }
      case 'error':
        res
          .writeHead(500, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: 'CUDA out of memory' }))
        return
      case 'overloaded':
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: 'Model is currently loading', estimated_time: 20 }))
        return
      case 'garbage':
        res.writeHead(200, { 'content-type': 'image/png' }).end('this is not an image')
        return
      case 'jpeg':
        // A provider that ignores Accept: image/png and sends JPEG (SOI + JFIF marker).
        res
          .writeHead(200, { 'content-type': 'image/jpeg' })
          .end(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0]))
        return
    }
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}${ENDPOINT_PATH}`
  worker = await startWorker({
    HF_TOKEN: TOKEN,
    HF_MODELS: HF_MODEL,
    HF_ENDPOINT_URL: endpoint,
    HF_TIMEOUT_MS: String(TIMEOUT_MS),
  })
  key = (await worker.createKey({ name: 'hosted-provider-test' })).key
  // The worker's first request compiles the bundled model's WebAssembly: slow on a busy machine.
}, 300_000)

afterAll(async () => {
  await worker?.stop()
  server?.closeAllConnections()
  server?.close()
})

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

function generate(body: Record<string, unknown>, accept = 'image/png', apiKey = key) {
  return fetch(`${worker.url}/v1/images`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${apiKey}`,
      'Content-Type': 'application/json',
      Accept: accept,
    },
    body: JSON.stringify({ model: MODEL, ...body }),
  })
}

describe('hosted provider (Hugging Face Inference) through the real worker', () => {
  it('lists the hosted model next to the bundled default, with its preset and byte limit', async () => {
    const res = await fetch(`${worker.url}/v1/models`, {
      headers: { Authorization: `Bearer ${key}` },
    })
    expect(res.status).toBe(200)
    const { models } = (await res.json()) as { models: Record<string, any>[] }
    expect(models[0].id).toBe('tiny-shapes')
    const hosted = models.find((m) => m.id === MODEL)!
    expect(hosted.digest).toMatch(/^[0-9a-f]{64}$/)
    expect(hosted.digest).not.toBe(models[0].digest)
    expect(hosted.max_prompt_tokens).toBe(1000)
    expect(hosted.defaults).toEqual({
      steps: 1,
      guidance_scale: 0,
      scheduler: 'default',
      width: 512,
      height: 512,
    })
    expect(hosted.schedulers).toEqual(['default'])
  })

  it('forwards a miss to the provider with the token and parameters; a repeat is a hit', async () => {
    provider.mode = 'png'
    const before = provider.calls.length
    // The README's "Hosted models" curl example.
    const res = await generate({ prompt: 'a red fox in the snow', seed: 7 })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get('content-type')).toBe('image/png')
    expect(res.headers.get('x-cache')).toBe('MISS')
    const bytes = new Uint8Array(await res.arrayBuffer())
    expect(Buffer.from(bytes).equals(provider.sent.get(7)!)).toBe(true)

    expect(provider.calls.length).toBe(before + 1)
    const call = provider.calls.at(-1)!
    expect(call.method).toBe('POST')
    expect(call.path).toBe(ENDPOINT_PATH)
    expect(call.headers.authorization).toBe(`Bearer ${TOKEN}`)
    expect(call.headers.accept).toBe('image/png')
    expect(call.headers['content-type']).toBe('application/json')
    expect(call.body).toEqual({
      inputs: 'a red fox in the snow',
      parameters: { guidance_scale: 0, num_inference_steps: 1, width: 512, height: 512, seed: 7 },
    })

    const again = await generate({ prompt: 'a red fox in the snow', seed: 7 })
    expect(again.status).toBe(200)
    expect(again.headers.get('x-cache')).toBe('HIT')
    expect(sha256(new Uint8Array(await again.arrayBuffer()))).toBe(sha256(bytes))
    expect(provider.calls.length).toBe(before + 1)
  })

  it('calls the provider once for concurrent identical requests (single flight)', async () => {
    provider.mode = 'png'
    provider.delayMs = 800
    const before = provider.calls.length
    try {
      const body = { prompt: 'a lighthouse at dusk', negative_prompt: 'blurry', seed: 8 }
      const responses = await Promise.all([1, 2, 3, 4].map(() => generate(body)))
      const hashes = await Promise.all(
        responses.map(async (r) => {
          expect(r.status).toBe(200)
          return sha256(new Uint8Array(await r.arrayBuffer()))
        }),
      )
      expect(new Set(hashes).size).toBe(1)
      expect(provider.calls.length).toBe(before + 1)
      expect(provider.calls.at(-1)!.body.parameters.negative_prompt).toBe('blurry')
    } finally {
      provider.delayMs = 0
    }
  })

  it('makes n images as n calls with seed + i, stored and served as PNG', async () => {
    provider.mode = 'png'
    const before = provider.calls.length
    const res = await generate(
      { prompt: 'two cats', seed: 20, n: 2, width: 256, height: 384, steps: 4 },
      'application/json',
    )
    expect(res.status, await res.clone().text()).toBe(200)
    const out = (await res.json()) as {
      images: { url: string; seed: number; sha256: string; width: number; height: number }[]
      model: string
    }
    expect(out.model).toBe(MODEL)
    expect(out.images.map((i) => [i.seed, i.width, i.height])).toEqual([
      [20, 256, 384],
      [21, 256, 384],
    ])
    const seeds = provider.calls.slice(before).map((c) => c.body.parameters.seed)
    expect(seeds).toEqual([20, 21])
    for (const img of out.images) {
      const r = await fetch(img.url)
      expect(r.headers.get('content-type')).toBe('image/png')
      const got = Buffer.from(await r.arrayBuffer())
      expect(got.equals(provider.sent.get(img.seed)!)).toBe(true)
      expect(sha256(got)).toBe(img.sha256)
    }
  })

  it('measures prompts in UTF-8 bytes: over 1000 is refused, truncate cuts at a character', async () => {
    const before = provider.calls.length
    const long = await generate({ prompt: 'x'.repeat(1001), seed: 1 })
    expect(long.status).toBe(422)
    expect(((await long.json()) as { type: string }).type).toBe(
      `${PROBLEM_TYPE_BASE}prompt-too-long`,
    )
    expect(provider.calls.length).toBe(before)

    provider.mode = 'png'
    const cut = await generate({ prompt: 'a' + 'é'.repeat(600), seed: 2, truncate: true })
    expect(cut.status, await cut.clone().text()).toBe(200)
    // Byte 1000 falls inside the 500th 'é', so the prompt ends after the 499th (999 bytes).
    expect(provider.calls.at(-1)!.body.inputs).toBe('a' + 'é'.repeat(499))
  })

  it('maps provider failures to 502/503/504 problems, caches nothing and refunds each', async () => {
    const body = { prompt: 'a failing provider', seed: 99 }
    // Room for one image per hour: every failure below must be refunded for the last call to run.
    const tight = (
      await worker.createKey({
        name: 'hosted-refunds',
        rate_limit: { burst: 1, period_seconds: 3600 },
      })
    ).key
    const cases: [Mode, number, string][] = [
      ['error', 502, 'backend-error'],
      // The client would retry a 503 forever by default; the engine turns that off.
      ['overloaded', 503, 'backend-unavailable'],
      ['garbage', 502, 'backend-error'],
      ['jpeg', 502, 'backend-error'],
      ['hang', 504, 'backend-timeout'],
    ]
    for (const [mode, status, slug] of cases) {
      provider.mode = mode
      for (let attempt = 0; attempt < 2; attempt++) {
        const before = provider.calls.length
        const started = Date.now()
        const res = await generate(body, 'image/png', tight)
        expect(res.status, `${mode}: ${await res.clone().text()}`).toBe(status)
        expect(res.headers.get('content-type')).toBe('application/problem+json')
        const problem = (await res.json()) as { type: string; status: number }
        expect(problem).toMatchObject({ type: PROBLEM_TYPE_BASE + slug, status })
        // Nothing was cached, so every attempt reaches the provider, exactly once.
        expect(provider.calls.length, mode).toBe(before + 1)
        if (mode === 'hang') expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 100)
      }
    }
    provider.mode = 'png'
    const before = provider.calls.length
    const ok = await generate(body, 'image/png', tight)
    expect(ok.status).toBe(200)
    expect(ok.headers.get('x-cache')).toBe('MISS')
    expect(provider.calls.length).toBe(before + 1)
  })
})
