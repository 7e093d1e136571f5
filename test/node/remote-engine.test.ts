/**
 * The edge's GPU-backend client (`src/engine/remote-engine.ts`) against the real backend app
 * (`src/backend/service.ts`, onnxruntime-node CPU, the bundled model), with faults injected
 * where they happen in production:
 * - on the wire, by a node:http proxy in front of the real backend that drops connections or
 *   answers 5xx (the stand-in is the network, not the backend);
 * - inside the backend, by an ONNX session whose UNet run fails mid-generation, so the real
 *   service streams progress frames and then an error frame.
 * Each checks what the engine promises: one retry of a dropped connection on the same backend,
 * failover to the next backend after a 5xx with the failing one skipped afterwards, and an
 * error frame mid-stream surfacing as a 502 after the progress it streamed.
 */
import { serve, type ServerType } from '@hono/node-server'
import { randomBytes } from 'node:crypto'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackendApp } from '../../src/backend/service'
import { BackendError, EngineError } from '../../src/engine/errors'
import type { QueueOptions } from '../../src/engine/queue'
import { createRemoteEngine } from '../../src/engine/remote-engine'
import type { GenerateRequest, GenerationProgress } from '../../src/engine/types'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import type { InferenceBackend } from '../../src/pipeline/tensor'

const MODEL_DIR = fileURLToPath(new URL('../../models/tiny-shapes', import.meta.url))
const SECRET = randomBytes(16).toString('hex')

const servers: (Server | ServerType)[] = []
afterAll(() => servers.forEach((s) => s.close()))

/** Serves a backend app on localhost; returns its URL and how many jobs it started. */
async function startBackend(backend: InferenceBackend, queue?: QueueOptions) {
  const pipe = new StableDiffusionPipeline(await loadModel(folderSource(MODEL_DIR), backend))
  const started = { jobs: 0 }
  const app = createBackendApp({
    models: [pipe],
    secret: SECRET,
    onJobStart: () => started.jobs++,
    queue,
  })
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  servers.push(server)
  await new Promise((r) => server.once('listening', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, started, pipe }
}

/** What the proxy does to the next job POSTs; everything else is forwarded as it is. */
type Fault = 'none' | 'drop-once' | 'drop' | 500 | 503

/** A proxy in front of `target` that injects `fault` into job requests and counts them. */
async function faultProxy(target: string) {
  const state = { fault: 'none' as Fault, jobs: 0 }
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/jobs') {
      state.jobs++
      const fault = state.fault
      if (fault === 'drop-once') state.fault = 'none'
      if (fault === 'drop' || fault === 'drop-once') {
        // The connection dies before any answer, as when a backend host restarts.
        req.socket.destroy()
        return
      }
      if (typeof fault === 'number') {
        req.resume()
        res.writeHead(fault, { 'content-type': 'text/plain' }).end('injected failure')
        return
      }
    }
    const upstream = httpRequest(
      new URL(req.url ?? '/', target),
      { method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers)
        up.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, state }
}

/**
 * A CPU backend whose UNet session awaits `before(call)` ahead of each run (call 1, 2, …): a
 * rejection is a fault inside ONNX Runtime, a delay a slow device. Other sessions are as they are.
 */
function unetFault(before: (call: number) => Promise<void>): InferenceBackend {
  const cpu = createNodeBackend('cpu')
  return {
    name: cpu.name,
    readsFiles: cpu.readsFiles,
    async createSession(model, options) {
      const session = await cpu.createSession(model, options)
      if (options?.label !== 'unet') return session
      let calls = 0
      return {
        inputs: session.inputs,
        outputs: session.outputs,
        release: () => session.release(),
        run: async (feeds, names) => {
          await before(++calls)
          return session.run(feeds, names)
        },
      }
    },
  }
}

let good: Awaited<ReturnType<typeof startBackend>>
let failing: Awaited<ReturnType<typeof startBackend>>
let full: Awaited<ReturnType<typeof startBackend>>

beforeAll(async () => {
  good = await startBackend(createNodeBackend('cpu'))
  // The UNet fails on its second run, after the first step's progress went out.
  failing = await startBackend(
    unetFault((call) =>
      call === 2 ? Promise.reject(new Error('injected UNet failure')) : Promise.resolve(),
    ),
  )
  // One run at a time and nobody waiting: a second job while one runs is refused.
  full = await startBackend(
    unetFault(() => new Promise((r) => setTimeout(r, 150))),
    { concurrency: 1, maxWaiting: 0 },
  )
}, 120_000)

/** An engine over `urls` (tried in order) for the bundled model, text encoded at the edge. */
const engineFor = (urls: string[]) =>
  createRemoteEngine([good.pipe], { urls, secret: SECRET, downForMs: 60_000 })

/** A small request; `seed` keeps each test's job (and its idempotency key) distinct. */
function request(seed: number): GenerateRequest {
  const info = engineFor([good.url]).models()[0]
  return {
    model: info.id,
    prompt: 'a large red circle in the centre on a white background',
    negativePrompt: '',
    seed,
    steps: 4,
    guidanceScale: info.defaults.guidance_scale,
    width: info.defaults.width,
    height: info.defaults.height,
    scheduler: info.defaults.scheduler,
    n: 1,
    truncate: false,
    options: {},
  }
}

describe('remote engine faults against the real backend', () => {
  it('retries a connection dropped before any answer once, on the same backend', async () => {
    const proxy = await faultProxy(good.url)
    proxy.state.fault = 'drop-once'
    const before = good.started.jobs
    const [image] = await engineFor([proxy.url]).generate(request(7001))
    expect(proxy.state.jobs).toBe(2)
    expect(good.started.jobs).toBe(before + 1)
    // The same bytes as the job sent straight to the backend (which replays it by key).
    const [direct] = await engineFor([good.url]).generate(request(7001))
    expect(Buffer.from(image.bytes).equals(Buffer.from(direct.bytes))).toBe(true)
    expect(good.started.jobs).toBe(before + 1)
  })

  it('fails over after the retry of a dropped connection fails too', async () => {
    const proxy = await faultProxy(good.url)
    proxy.state.fault = 'drop'
    const images = await engineFor([proxy.url, good.url]).generate(request(7002))
    expect(images).toHaveLength(1)
    expect(proxy.state.jobs).toBe(2)
  })

  it.each([500, 503] as const)(
    'fails over after a %i, then keeps jobs away from the failing backend',
    async (status) => {
      const proxy = await faultProxy(good.url)
      proxy.state.fault = status
      const engine = engineFor([proxy.url, good.url])
      const before = good.started.jobs
      expect(await engine.generate(request(7100 + status))).toHaveLength(1)
      expect(proxy.state.jobs).toBe(1)
      expect(good.started.jobs).toBe(before + 1)
      // Its circuit is open: the next job goes straight to the healthy backend.
      expect(await engine.generate(request(7200 + status))).toHaveLength(1)
      expect(proxy.state.jobs).toBe(1)
      expect(good.started.jobs).toBe(before + 2)
    },
  )

  it('reports 502 when every backend answers 5xx', async () => {
    const a = await faultProxy(good.url)
    const b = await faultProxy(good.url)
    a.state.fault = 500
    b.state.fault = 500
    const err = await engineFor([a.url, b.url])
      .generate(request(7300))
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BackendError)
    expect((err as BackendError).status).toBe(502)
    expect((err as BackendError).failure.retryable).toBe(true)
    expect([a.state.jobs, b.state.jobs]).toEqual([1, 1])
  })

  it('turns an error frame after streamed progress into a 502 naming the failure', async () => {
    const progress: GenerationProgress[] = []
    const err = await engineFor([failing.url])
      .generate(request(7400), { onProgress: (p) => progress.push(p) })
      .catch((e: unknown) => e)
    expect(failing.started.jobs).toBe(1)
    // The first step's progress arrived before the failure did.
    expect(progress).toEqual([{ step: 1, totalSteps: 4, image: 0 }])
    expect(err).toBeInstanceOf(BackendError)
    expect((err as BackendError).status).toBe(502)
    expect((err as BackendError).message).toContain('injected UNet failure')
  })

  it('sends a job past a full backend to the next one, and says when to retry if all are full', async () => {
    const occupying = engineFor([full.url]).generate(request(7500))
    // Wait until the backend runs it (its slot is taken)…
    for (let t = 0; full.started.jobs < 1 && t < 100; t++)
      await new Promise((r) => setTimeout(r, 20))
    expect(full.started.jobs).toBe(1)
    const engine = engineFor([full.url, good.url])
    const before = good.started.jobs
    // …then the next job goes to the healthy backend, and the full one stays in rotation.
    expect(await engine.generate(request(7501))).toHaveLength(1)
    expect(good.started.jobs).toBe(before + 1)
    const err = await engineFor([full.url])
      .generate(request(7502))
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(EngineError)
    expect((err as EngineError).failure).toMatchObject({
      status: 503,
      type: 'engine-overloaded',
      retryable: true,
    })
    expect((err as EngineError).failure.retryAfterSeconds).toBeGreaterThanOrEqual(1)
    expect(await occupying).toHaveLength(1)
    // Once the slot is free again, the same backend takes jobs (its circuit never opened).
    expect(await engineFor([full.url]).generate(request(7502))).toHaveLength(1)
    expect(full.started.jobs).toBe(2)
  })
})
