/**
 * The GPU backend service end to end on onnxruntime-node (CPU), reached by the edge's remote
 * engine over real HTTP: same images as the local pipeline, idempotent retries, failover, and a
 * clear 502/503/504 for every way a backend can fail.
 */
import { serve, type ServerType } from '@hono/node-server'
import { createServer, request as httpRequest, type ClientRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackendApp, MAX_JOB_BYTES } from '../../src/backend/service'
import type { GenerateRequest } from '../../src/engine/types'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { probeBackend, rankBackends, type BackendReadiness } from '../../src/engine/health'
import {
  EDGE_TEXT_ENCODER_MAX_BYTES,
  textEncoderBytes,
  textEncoderPlacement,
} from '../../src/engine/placement'
import type { InferenceBackend } from '../../src/pipeline/tensor'
import {
  decodeJob,
  encodeJob,
  HEADERS,
  JOB_CONTENT_TYPE,
  signRequest,
} from '../../src/backend/protocol'
import { BackendError } from '../../src/engine/errors'
import { createRemoteEngine } from '../../src/engine/remote-engine'
import { folderSource } from '../../src/node/folder-source'
import { createPipelineEngine } from '../../src/engine/local-engine'
import { describeModelFolder, loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { GOLDEN } from './golden'
import { decodePngRgb } from './png-decode'

const SECRET = 'test-secret-0123456789'
const DIR = join(GOLDEN, 'pipeline', 'tiny-sd-optimum')

let models: StableDiffusionPipeline[]
let server: ServerType
let base: string
const started: string[] = []
const extra: Server[] = []

const request = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
  model: 'tiny-sd-optimum',
  prompt: 'a red circle',
  negativePrompt: '',
  seed: 7,
  steps: 4,
  guidanceScale: 7.5,
  width: 64,
  height: 64,
  scheduler: 'euler_a',
  n: 1,
  truncate: true,
  options: {},
  ...over,
})

/** A plain HTTP server with a handler, on a free port. */
async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const s = createServer(handler)
  extra.push(s)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`
}

beforeAll(async () => {
  const model = await loadModel(folderSource(DIR), createNodeBackend('cpu'))
  models = [new StableDiffusionPipeline(model)]
  const app = createBackendApp({
    models,
    secret: SECRET,
    provider: 'cpu',
    onJobStart: (k) => started.push(k),
  })
  server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  await new Promise((r) => server.once('listening', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => {
  server?.close()
  for (const s of extra) s.close()
})

describe('gpu backend service', () => {
  it('returns the same PNG bytes as the local pipeline, with progress', async () => {
    const remote = createRemoteEngine(models, { urls: [base], secret: SECRET })
    const steps: number[] = []
    const [got] = await remote.generate(request(), { onProgress: (p) => steps.push(p.step) })
    const [want] = await createPipelineEngine(models).generate(request())
    expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes))).toBe(true)
    expect(got.seed).toBe(7)
    expect(steps).toEqual([1, 2, 3, 4])
  })

  it('runs concurrent identical jobs once (idempotency key)', async () => {
    const remote = createRemoteEngine(models, { urls: [base], secret: SECRET })
    const before = started.length
    const req = request({ seed: 99, n: 2 })
    const results = await Promise.all([
      remote.generate(req),
      remote.generate(req),
      remote.generate(req),
    ])
    expect(started.length - before).toBe(1)
    for (const r of results) {
      expect(r).toHaveLength(2)
      expect(Buffer.from(r[1].bytes).equals(Buffer.from(results[0][1].bytes))).toBe(true)
    }
  })

  it('fails over from a dead backend to a live one', async () => {
    const dead = 'http://127.0.0.1:9' // discard port: connection refused
    const remote = createRemoteEngine(models, { urls: [dead, base], secret: SECRET })
    const [img] = await remote.generate(request({ seed: 3 }))
    expect(img.bytes.length).toBeGreaterThan(100)
  })

  it('gives 503 when no backend is reachable', async () => {
    const remote = createRemoteEngine(models, { urls: ['http://127.0.0.1:9'], secret: SECRET })
    await expect(remote.generate(request())).rejects.toMatchObject({
      name: 'BackendError',
      status: 503,
    })
  })

  it('gives 502 when the backend refuses the signature', async () => {
    const remote = createRemoteEngine(models, { urls: [base], secret: 'wrong-secret' })
    const err = await remote.generate(request()).catch((e) => e)
    expect(err).toBeInstanceOf(BackendError)
    expect(err.status).toBe(502)
    expect(err.message).toMatch(/refused the job \(401\)/)
  })

  it('refuses an expired timestamp and a tampered body', async () => {
    const body = encodeJob({
      header: {
        ...request(),
        model: 'tiny-sd-optimum',
        digest: models[0].spec.digest,
        guidanceScale: 1,
      } as never,
      tensors: {},
    })
    const old = Date.now() - 5 * 60_000
    const post = async (ts: number, b: Uint8Array, sig: string) =>
      fetch(`${base}/v1/jobs`, {
        method: 'POST',
        body: b,
        headers: {
          'content-type': JOB_CONTENT_TYPE,
          [HEADERS.timestamp]: String(ts),
          [HEADERS.signature]: sig,
        },
      })
    const expired = await post(old, body, await signRequest(SECRET, old, '/v1/jobs', body))
    expect(expired.status).toBe(401)
    expect(await expired.json()).toMatchObject({ detail: 'request signature expired' })
    const now = Date.now()
    const tampered = body.slice()
    tampered[tampered.length - 1] ^= 1
    const bad = await post(now, tampered, await signRequest(SECRET, now, '/v1/jobs', body))
    expect(bad.status).toBe(401)
    expect(bad.headers.get('content-type')).toBe('application/problem+json')
  })

  it('gives 502 for a backend that returns garbage', async () => {
    const garbage = await listen((_q, r) => {
      r.writeHead(200, { 'content-type': 'application/vnd.tti.frames' })
      r.end('I\x00\x00\x00\x10not a png at all')
    })
    const remote = createRemoteEngine(models, { urls: [garbage], secret: SECRET })
    await expect(remote.generate(request())).rejects.toMatchObject({ status: 502 })
    // Its circuit is open now; the client keeps getting 502, not a 503 for the same backend.
    await expect(remote.generate(request())).rejects.toMatchObject({
      status: 502,
      message: expect.stringMatching(/circuit open\) after: .*sent a malformed response/),
    })
  })

  it('caches nothing a proxy altered: the answer is signed for its job', async () => {
    // In front of the real backend: forwards the job, then edits the answer's frames.
    const proxy = (edit: (answer: Buffer) => Buffer) =>
      listen(async (q, r) => {
        const chunks: Buffer[] = []
        for await (const c of q) chunks.push(c as Buffer)
        const res = await fetch(new URL(q.url!, base), {
          method: q.method,
          headers: Object.fromEntries(
            Object.entries(q.headers).filter(([k]) => k !== 'host' && k !== 'content-length'),
          ) as Record<string, string>,
          body: Buffer.concat(chunks),
        })
        const answer = Buffer.from(await res.arrayBuffer())
        r.writeHead(res.status, { 'content-type': res.headers.get('content-type') ?? '' })
        r.end(edit(answer))
      })
    /** Offsets of each frame: kind byte, u32 length, payload. */
    const frames = (b: Buffer) => {
      const out: { kind: string; at: number; len: number }[] = []
      for (let at = 0; at < b.length; at += 5 + b.readUInt32BE(at + 1))
        out.push({ kind: String.fromCharCode(b[at]), at, len: b.readUInt32BE(at + 1) })
      return out
    }
    const flipPixel = await proxy((b) => {
      const img = frames(b).find((f) => f.kind === 'I')!
      const copy = Buffer.from(b)
      copy[img.at + 5 + img.len - 20] ^= 0xff // inside the PNG, past its signature
      return copy
    })
    const remote = createRemoteEngine(models, { urls: [flipPixel], secret: SECRET })
    await expect(remote.generate(request({ seed: 71 }))).rejects.toMatchObject({
      status: 502,
      message: expect.stringMatching(/signature fails/),
    })
    // An answer signed for another job does not pass for this one either.
    let replayed: Buffer | undefined
    const other = await proxy((b) => (replayed ??= b))
    const first = createRemoteEngine(models, { urls: [other], secret: SECRET })
    await first.generate(request({ seed: 72 }))
    const second = createRemoteEngine(models, { urls: [other], secret: SECRET })
    await expect(second.generate(request({ seed: 73 }))).rejects.toMatchObject({ status: 502 })
  })

  it('gives 504 for a backend that is too slow', async () => {
    const slow = await listen(() => {
      /* never answers */
    })
    const remote = createRemoteEngine(models, { urls: [slow], secret: SECRET, timeoutMs: 300 })
    await expect(remote.generate(request())).rejects.toMatchObject({ status: 504 })
  })

  it('reports its models on /healthz', async () => {
    const res = await fetch(`${base}/healthz`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      ready: true,
      status: 'ready',
      provider: 'cpu',
      models: [{ id: 'tiny-sd-optimum', digest: models[0].spec.digest }],
    })
  })
})

describe('backend readiness and text encoder placement', () => {
  it('answers 503 on /healthz and refuses jobs until its models are loaded', async () => {
    let finish!: (m: readonly StableDiffusionPipeline[]) => void
    const app = createBackendApp({
      models: new Promise((r) => (finish = r)),
      secret: SECRET,
      provider: 'cpu',
    })
    const loading = await app.request('/healthz')
    expect(loading.status).toBe(503)
    expect(await loading.json()).toMatchObject({ ready: false, status: 'loading', models: [] })
    const body = encodeJob({ header: { ...request(), digest: 'x' } as never, tensors: {} })
    const ts = Date.now()
    const job = await app.request('/v1/jobs', {
      method: 'POST',
      body,
      headers: {
        'content-type': JOB_CONTENT_TYPE,
        [HEADERS.timestamp]: String(ts),
        [HEADERS.signature]: await signRequest(SECRET, ts, '/v1/jobs', body),
      },
    })
    expect(job.status).toBe(503)
    expect(job.headers.get('retry-after')).toBe('5')
    finish(models)
    await new Promise((r) => setTimeout(r, 0))
    const ready = await app.request('/healthz')
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ ready: true, status: 'ready', provider: 'cpu' })

    const failed = createBackendApp({
      models: Promise.reject(new Error('no unet')),
      secret: SECRET,
    })
    await new Promise((r) => setTimeout(r, 0))
    const res = await failed.request('/healthz')
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({ status: 'failed', error: 'no unet' })
  })

  it('encodes on the backend from token ids, with the same bytes as encoding at the edge', async () => {
    const bodies: Uint8Array[] = []
    const remote = createRemoteEngine(models, {
      urls: [base],
      secret: SECRET,
      textEncoder: { 'tiny-sd-optimum': 'backend' },
      // Inspect what crosses the wire: token ids, not hidden states.
      fetch: (u, i) => {
        if (i.body instanceof Uint8Array) bodies.push(i.body)
        return fetch(u, i)
      },
    })
    const encoded = async () =>
      ((await (await fetch(`${base}/healthz`)).json()) as BackendReadiness).jobs.promptsEncoded
    const before = await encoded()
    const req = request({ seed: 21, prompt: 'a blue square' })
    const [got] = await remote.generate(req)
    const [want] = await createPipelineEngine(models).generate(req)
    expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes))).toBe(true)
    const job = decodeJob(bodies[0])
    expect(Object.keys(job.tensors)).toEqual(['input_ids'])
    expect(job.tensors.input_ids.dims).toEqual([2, models[0].spec.tokenWindow])
    expect((await encoded()) - before).toBe(2)
  })
})

describe('backend health on the edge', () => {
  /** A proxy in front of the real backend that can fail jobs, counting what reaches it. */
  async function flakyProxy() {
    const state = { failJobs: 0, healthFails: false, jobs: 0, probes: 0 }
    const url = await listen(async (q, r) => {
      const chunks: Buffer[] = []
      for await (const c of q) chunks.push(c as Buffer)
      if (q.url === '/healthz') {
        state.probes++
        if (state.healthFails) {
          r.writeHead(503, { 'content-type': 'application/json' })
          return r.end(JSON.stringify({ ready: false, status: 'loading', models: [] }))
        }
      } else {
        state.jobs++
        if (state.failJobs > 0) {
          state.failJobs--
          r.writeHead(500)
          return r.end()
        }
      }
      const res = await fetch(`${base}${q.url}`, {
        method: q.method,
        headers: q.headers as Record<string, string>,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      })
      r.writeHead(res.status, { 'content-type': res.headers.get('content-type') ?? '' })
      r.end(Buffer.from(await res.arrayBuffer()))
    })
    return { url, state }
  }

  it('opens the circuit on failure and lets the backend back in after a passing /healthz probe', async () => {
    const flaky = await flakyProxy()
    const remote = createRemoteEngine(models, {
      urls: [flaky.url],
      secret: SECRET,
      downForMs: 500,
    })
    flaky.state.failJobs = 1
    await expect(remote.generate(request({ seed: 31 }))).rejects.toMatchObject({ status: 502 })
    expect(flaky.state.jobs).toBe(1)
    // Open: refused without a request to the backend, with the status of the failure that opened it.
    await expect(remote.generate(request({ seed: 31 }))).rejects.toMatchObject({
      status: 502,
      message: expect.stringMatching(/circuit open/),
    })
    expect(flaky.state).toMatchObject({ jobs: 1, probes: 0 })
    // Half-open after the backoff: a failing probe reopens it (backoff doubles), no job is sent.
    await new Promise((r) => setTimeout(r, 600))
    flaky.state.healthFails = true
    await expect(remote.generate(request({ seed: 31 }))).rejects.toMatchObject({
      status: 502,
      message: expect.stringMatching(/circuit open/),
    })
    expect(flaky.state).toMatchObject({ jobs: 1, probes: 1 })
    await new Promise((r) => setTimeout(r, 500))
    await expect(remote.generate(request({ seed: 31 }))).rejects.toMatchObject({
      status: 502,
      message: expect.stringMatching(/circuit open/),
    })
    expect(flaky.state.probes).toBe(1) // still open: 1000 ms this time
    // Ready again: the next probe passes and the job goes through.
    await new Promise((r) => setTimeout(r, 700))
    flaky.state.healthFails = false
    const [img] = await remote.generate(request({ seed: 31 }))
    expect(img.bytes.length).toBeGreaterThan(100)
    expect(flaky.state).toMatchObject({ jobs: 2, probes: 2 })
  })

  it('sends jobs to backends the shared probes found healthy first', async () => {
    const sick = await flakyProxy()
    sick.state.failJobs = 100
    const healthy = await flakyProxy()
    const shared = {
      [sick.url]: await probeBackend('http://127.0.0.1:9', fetch),
      [healthy.url]: await probeBackend(healthy.url, fetch),
    }
    expect(shared[healthy.url]).toMatchObject({ healthy: true, provider: 'cpu' })
    expect(shared[sick.url]).toMatchObject({ healthy: false })
    const remote = createRemoteEngine(models, {
      urls: [sick.url, healthy.url],
      secret: SECRET,
      health: async () => shared,
    })
    await remote.generate(request({ seed: 41 }))
    expect(sick.state.jobs).toBe(0)
    expect(healthy.state.jobs).toBe(1)
    // A backend serving another model digest ranks below one that was never probed.
    expect(
      rankBackends(['a', 'b', 'c'], { a: { ...shared[healthy.url], digests: ['other'] } }, 'd'),
    ).toEqual(['b', 'c', 'a'])
  })
})

describe('text encoder placement and the embedding cache', () => {
  it('places by size unless overridden, per model or for all', async () => {
    const bundled = textEncoderBytes(
      (
        await describeModelFolder(
          folderSource(fileURLToPath(new URL('../../models/tiny-shapes', import.meta.url))),
        )
      ).spec,
    )
    expect(bundled).toBeGreaterThan(1_000_000)
    expect(textEncoderPlacement('tiny-shapes', bundled)).toBe('edge')
    expect(textEncoderPlacement('sd', EDGE_TEXT_ENCODER_MAX_BYTES + 1)).toBe('backend')
    expect(textEncoderPlacement('tiny-shapes', bundled, 'backend')).toBe('backend')
    expect(textEncoderPlacement('tiny-shapes', bundled, 'other=backend')).toBe('edge')
    expect(textEncoderPlacement('sd', 1e9, 'edge,sd=auto')).toBe('backend')
    expect(() => textEncoderPlacement('x', 1, 'gpu')).toThrow(/not edge, backend or auto/)
  })

  it('caches embeddings by token ids as an LRU', async () => {
    let runs = 0
    const node = createNodeBackend('cpu')
    // Counts text encoder runs; the sessions themselves are real.
    const counting: InferenceBackend = {
      name: node.name,
      async createSession(bytes, opts) {
        const s = await node.createSession(bytes, opts)
        if (opts?.label !== 'text_encoder') return s
        return { ...s, run: (f, o) => (runs++, s.run(f, o)) }
      },
    }
    const pipe = new StableDiffusionPipeline(await loadModel(folderSource(DIR), counting))
    const base = pipe.tokenize('a red circle').inputIds
    // Distinct from `base` and from each other: vary token 1, skipping base's own value.
    const ids = (k: number) => base.map((v, i) => (i === 1 ? (k >= base[1] ? k + 1 : k) : v))
    const size = StableDiffusionPipeline.EMBEDDING_CACHE_SIZE
    const first = await pipe.encodeTokenIds(ids(0))
    await pipe.encodePrompt('a red circle')
    for (let k = 1; k <= size - 2; k++) await pipe.encodeTokenIds(ids(k))
    expect(runs).toBe(size) // full: ids(0), the prompt, ids(1..size-2)
    expect(await pipe.encodeTokenIds(ids(0))).toBe(first) // a hit, now the most recent
    expect(runs).toBe(size)
    await pipe.encodeTokenIds(ids(size - 1)) // evicts the least recent: the prompt
    expect(await pipe.encodeTokenIds(ids(0))).toBe(first)
    expect(runs).toBe(size + 1)
    await pipe.encodePrompt('a red circle')
    expect(runs).toBe(size + 2)
    await expect(pipe.encodeTokenIds([1, 2])).rejects.toThrow(/input ids must be/)
  })
})

describe('backend request hardening', () => {
  /** A raw HTTP request whose body is written by `write`; resolves with the status. */
  function rawPost(headers: Record<string, string>, write: (r: ClientRequest) => void) {
    return new Promise<number>((resolve, reject) => {
      const u = new URL('/v1/jobs', base)
      const r = httpRequest(
        { method: 'POST', host: u.hostname, port: u.port, path: u.pathname, headers },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
          r.destroy()
        },
      )
      r.on('error', () => undefined)
      write(r)
      setTimeout(() => reject(new Error('no answer while the body was still open')), 10_000)
    })
  }

  it('refuses an oversized or unsigned body before reading it, and caps a streamed one', async () => {
    const chunk = Buffer.alloc(64 * 1024)
    // A declared 400 MiB body: answered at once, with most of it never sent.
    expect(
      await rawPost(
        { 'content-type': JOB_CONTENT_TYPE, 'content-length': String(400 * 2 ** 20) },
        (r) => r.write(chunk),
      ),
    ).toBe(413)
    // No signature headers: answered before the (endless, chunked) body ends.
    expect(await rawPost({ 'content-type': JOB_CONTENT_TYPE }, (r) => r.write(chunk))).toBe(401)
    // Signed headers but a chunked body past the limit: reading stops at the limit.
    const ts = Date.now()
    expect(
      await rawPost(
        {
          'content-type': JOB_CONTENT_TYPE,
          [HEADERS.timestamp]: String(ts),
          [HEADERS.signature]: `v1=${'0'.repeat(64)}`,
        },
        (r) => {
          for (let i = 0; i <= MAX_JOB_BYTES / chunk.length + 1; i++) r.write(chunk)
        },
      ),
    ).toBe(413)
  })

  it('keys runs by the signed body, not by the Idempotency-Key header', async () => {
    const a = request({ seed: 31, prompt: 'a green square' })
    const b = request({ seed: 32, prompt: 'a yellow circle' })
    const remote = createRemoteEngine(models, {
      urls: [base],
      secret: SECRET,
      // Replays job A under the key job B will send: B must still get its own images.
      fetch: (u, i) => {
        const headers = { ...(i.headers as Record<string, string>) }
        if (replaying) headers[HEADERS.idempotency] = 'f'.repeat(64)
        return fetch(u, { ...i, headers })
      },
    })
    let replaying = true
    await remote.generate(a)
    const [gotB] = await remote.generate(b)
    replaying = false
    const [wantB] = await createPipelineEngine(models).generate(b)
    expect(Buffer.from(gotB.bytes).equals(Buffer.from(wantB.bytes))).toBe(true)
  })
})

describe('backend cancellation', () => {
  it('cancels a run once every client went away (after a grace period), and counts it', async () => {
    const app = createBackendApp({ models, secret: SECRET, abandonGraceMs: 50 })
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => s.once('listening', r))
    const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`
    const health = async () =>
      ((await (await fetch(`${url}/healthz`)).json()) as BackendReadiness).jobs
    try {
      const remote = createRemoteEngine(models, { urls: [url], secret: SECRET })
      const client = new AbortController()
      let steps = 0
      // A long job (1000 steps at 256x256): the client leaves after the first step.
      const job = remote
        .generate(request({ seed: 41, steps: 1000, width: 256, height: 256 }), {
          signal: client.signal,
          onProgress: () => {
            if (++steps === 1) client.abort(new Error('the client went away'))
          },
        })
        .catch((e) => e)
      expect(((await job) as Error).message).toBe('the client went away')
      const deadline = Date.now() + 20_000
      let jobs = await health()
      while (jobs.running > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50))
        jobs = await health()
      }
      expect(jobs).toMatchObject({ started: 1, running: 0, cancelled: 1 })
    } finally {
      s.close()
    }
  })
})

describe('backend batching (--batch)', () => {
  let url: string
  let batched: ServerType
  const batches: string[][] = []
  const health = async () =>
    ((await (await fetch(`${url}/healthz`)).json()) as BackendReadiness).jobs
  beforeAll(async () => {
    const app = createBackendApp({
      models,
      secret: SECRET,
      abandonGraceMs: 50,
      // A window long enough for every job of a test to arrive: they then run as one batch.
      batch: { maxJobs: 4, windowMs: 300 },
      onBatch: (keys) => batches.push([...keys]),
    })
    batched = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => batched.once('listening', r))
    url = `http://127.0.0.1:${(batched.address() as AddressInfo).port}`
  })
  afterAll(() => batched?.close())

  /** Runs `reqs` at once through the batching backend, recording each one's progress. */
  async function concurrently(reqs: GenerateRequest[]) {
    const remote = createRemoteEngine(models, { urls: [url], secret: SECRET })
    const steps = reqs.map(() => [] as number[])
    const before = batches.length
    const results = await Promise.all(
      reqs.map((r, i) =>
        remote.generate(r, { onProgress: (p) => p.step > 0 && steps[i].push(p.step) }),
      ),
    )
    return { results, steps, batches: batches.slice(before) }
  }

  it('runs concurrent compatible jobs as one batch, each with its own PNG and progress', async () => {
    const reqs = [
      request({ seed: 101 }),
      request({ seed: 102, prompt: 'a blue square', negativePrompt: 'red' }),
      request({ seed: 103, guidanceScale: 3, n: 2 }),
      request({ seed: 104, guidanceScale: 1 }),
    ]
    const { results, steps, batches } = await concurrently(reqs)
    expect(batches.map((b) => b.length)).toEqual([4])
    const local = createPipelineEngine(models)
    for (const [i, req] of reqs.entries()) {
      expect(steps[i]).toEqual([1, 2, 3, 4])
      const want = await local.generate(req)
      expect(results[i]).toHaveLength(want.length)
      for (const [k, img] of results[i].entries()) {
        if (req.guidanceScale > 1) {
          // Jobs with guidance batch two rows of their own already: the same bytes on ORT CPU.
          expect(Buffer.from(img.bytes).equals(Buffer.from(want[k].bytes))).toBe(true)
        } else {
          // One row alone runs other kernels: the golden tolerance (±1, at most 1 % of values).
          const got = decodePngRgb(img.bytes)
          const ref = decodePngRgb(want[k].bytes)
          let differ = 0
          for (let j = 0; j < ref.length; j++) {
            expect(Math.abs(got[j] - ref[j])).toBeLessThanOrEqual(1)
            if (got[j] !== ref[j]) differ++
          }
          expect(differ / ref.length).toBeLessThanOrEqual(0.01)
        }
      }
    }
  })

  it('runs jobs alone that differ in size, steps or scheduler', async () => {
    const reqs = [
      request({ seed: 111 }),
      request({ seed: 112, steps: 5 }),
      request({ seed: 113, height: 32 }),
      request({ seed: 114, scheduler: 'ddim' }),
      request({ seed: 115 }),
    ]
    const { results, batches } = await concurrently(reqs)
    expect(results.every((r) => r.length === 1)).toBe(true)
    expect(batches.map((b) => b.length).sort()).toEqual([1, 1, 1, 2])
    // The two compatible ones went together.
    expect(batches.find((b) => b.length === 2)).toBeDefined()
    const [want] = await createPipelineEngine(models).generate(reqs[4])
    expect(Buffer.from(results[4][0].bytes).equals(Buffer.from(want.bytes))).toBe(true)
  })

  it('cancels an abandoned job and lets the rest of its batch finish', async () => {
    const before = await health()
    const remote = createRemoteEngine(models, { urls: [url], secret: SECRET })
    const client = new AbortController()
    const long = { steps: 60, scheduler: 'ddim' }
    const steps: number[][] = [[], []]
    const leaving = remote
      .generate(request({ seed: 121, ...long }), {
        signal: client.signal,
        onProgress: (p) => {
          if (p.step > 0) steps[0].push(p.step)
          if (p.step === 2) client.abort(new Error('the client went away'))
        },
      })
      .then(
        () => new Error('finished'),
        (e: Error) => e,
      )
    const staying = remote.generate(request({ seed: 122, ...long }), {
      onProgress: (p) => p.step > 0 && steps[1].push(p.step),
    })
    expect((await leaving).message).toBe('the client went away')
    const [got] = await staying
    expect(batches.at(-1)).toHaveLength(2)
    expect(steps[1]).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
    const [want] = await createPipelineEngine(models).generate(request({ seed: 122, ...long }))
    expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes))).toBe(true)
    const deadline = Date.now() + 20_000
    let jobs = await health()
    while (jobs.running > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50))
      jobs = await health()
    }
    expect(jobs.cancelled - before.cancelled).toBe(1)
    expect(jobs.started - before.started).toBe(2)
  })
})

describe('a backend that dies mid-job', () => {
  it('is 503 (unavailable, retry later), not 502, and its circuit opens', async () => {
    const dying = await listen((_q, r) => {
      r.writeHead(200, { 'content-type': 'application/vnd.tti.frames' })
      const progress = Buffer.from(JSON.stringify({ step: 1, totalSteps: 4, image: 0 }))
      const head = Buffer.alloc(5)
      head.write('P', 0)
      head.writeUInt32BE(progress.length, 1)
      r.write(Buffer.concat([head, progress]))
      setTimeout(() => r.socket?.destroy(), 20) // killed after the first step
    })
    const remote = createRemoteEngine(models, { urls: [dying], secret: SECRET })
    const steps: number[] = []
    const error = await remote
      .generate(request(), { onProgress: (p) => steps.push(p.step) })
      .catch((e) => e)
    expect(steps).toEqual([1])
    expect(error).toBeInstanceOf(BackendError)
    expect(error).toMatchObject({ status: 503 })
    expect(error.message).toMatch(/went away during the job/)
    await expect(remote.generate(request())).rejects.toMatchObject({
      status: 503,
      message: expect.stringMatching(/circuit open/),
    })
  })
})
