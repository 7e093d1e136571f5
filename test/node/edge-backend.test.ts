/**
 * Edge to GPU backend through the binding, on the real local stack: `wrangler dev` (workerd with
 * local KV, R2 and Durable Objects) configured with `GPU_BACKEND_URLS` / `GPU_BACKEND_SECRET`,
 * and the backend service on localhost.
 * - On the `cpu` provider (in this process): the image matches the in-edge WebAssembly path
 *   within ±1 per 8-bit channel, because ORT's native CPU kernels and its WebAssembly kernels
 *   round differently (different GEMM/convolution accumulation order).
 * - On the `wasm` provider (`npm run gpu` as a real process, `--env gpu` of wrangler.toml): the
 *   same PNG bytes as a worker with no backend, with the text encoder at the edge or on the
 *   backend; the Cron Trigger's probes steer jobs away from an unhealthy backend.
 * - A backend that is down, refuses the signature, is slow or answers garbage gives the client a
 *   503/502/504 problem with nothing cached.
 */
import { serve, type ServerType } from '@hono/node-server'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { createServer as netServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackendApp } from '../../src/backend/service'
import type { BackendReadiness } from '../../src/engine/health'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { decodePicture } from '../../src/images/pictures'
import { createWebBackend } from '../../src/gpu/ort-web'
import { folderSource } from '../../src/node/folder-source'
import { createPipelineEngine } from '../../src/engine/local-engine'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** The folder `src/models/bundled.ts` imports: the backend must serve the same files. */
const MODEL_DIR = join(ROOT, 'models/tiny-shapes')
/** The model id `npm run gpu` gives a folder (its name), which is the bundled model's id. */
const MODEL_ID = 'tiny-shapes'
const SECRET = randomBytes(16).toString('hex')
const ADMIN = randomBytes(16).toString('hex')

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })

/** Stops of every process started here, run in `afterAll` too: a timed-out test skips its `finally`. */
const running = new Set<() => void>()
afterAll(() => running.forEach((stop) => stop()))

/** A running `wrangler dev` with extra vars (and `--env`, `--test-scheduled` when asked). */
async function startWorker(vars: Record<string, string>, opts: { env?: string } = {}) {
  const port = await freePort()
  const state = mkdtempSync(join(tmpdir(), 'tti-edge-backend-'))
  const args = [
    'wrangler',
    'dev',
    '--port',
    String(port),
    '--ip',
    '127.0.0.1',
    '--persist-to',
    state,
    ...(opts.env ? ['--env', opts.env, '--test-scheduled'] : []),
  ]
  for (const [k, v] of Object.entries({ ADMIN_TOKEN: ADMIN, ...vars }))
    args.push('--var', `${k}:${v}`)
  const child: ChildProcess = spawn('npx', [...args, '--show-interactive-dev-session=false'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    // A dev registry of its own: another `wrangler dev` of this worker starting or stopping
    // elsewhere (a parallel test) otherwise reloads this runtime mid-request (a text/plain 503).
    env: {
      ...process.env,
      CI: '1',
      CLOUDFLARE_CF_FETCH_ENABLED: 'false',
      WRANGLER_REGISTRY_PATH: join(state, 'registry'),
    },
  })
  let log = ''
  child.stdout!.on('data', (d) => (log += d))
  child.stderr!.on('data', (d) => (log += d))
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 120_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${log}`)
    if (
      await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break
    if (Date.now() > deadline) throw new Error(`wrangler dev did not start:\n${log}`)
    await new Promise((r) => setTimeout(r, 500))
  }
  const key = await fetch(`${base}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'edge-backend-test' }),
  }).then((r) => r.json() as Promise<{ key: string }>)
  const generate = (body: object) =>
    fetch(`${base}/v1/images`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key.key}`,
        'content-type': 'application/json',
        accept: 'image/png',
      },
      body: JSON.stringify(body),
    })
  const stop = () => {
    try {
      process.kill(-child.pid!, 'SIGTERM')
    } catch {
      /* gone */
    }
    rmSync(state, { recursive: true, force: true })
    running.delete(stop)
  }
  running.add(stop)
  const models = () =>
    fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } }).then(
      (r) => r.json() as Promise<{ models: { id: string; limits: { max_width: number } }[] }>,
    )
  return { base, generate, models, stop, log: () => log }
}

/** `npm run gpu` as a child process; resolves once `/healthz` says ready. */
async function startBackendProcess(providers: string, dirs: string[] = [MODEL_DIR]) {
  const port = await freePort()
  const child = spawn(
    join(ROOT, 'node_modules/.bin/tsx'),
    ['scripts/gpu-server.ts', '--port', String(port), ...dirs.flatMap((d) => ['--model', d])],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, TTI_BACKEND_SECRET: SECRET, TTI_PROVIDERS: providers },
    },
  )
  let log = ''
  child.stdout!.on('data', (d) => (log += d))
  child.stderr!.on('data', (d) => (log += d))
  const url = `http://127.0.0.1:${port}`
  const healthz = async () => {
    const res = await fetch(`${url}/healthz`)
    return { status: res.status, body: (await res.json()) as BackendReadiness }
  }
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gpu backend exited:\n${log}`)
    const h = await healthz().catch(() => undefined)
    if (h?.status === 200) break
    if (h) expect(h).toMatchObject({ status: 503, body: { ready: false, status: 'loading' } })
    if (Date.now() > deadline) throw new Error(`gpu backend did not get ready:\n${log}`)
    await new Promise((r) => setTimeout(r, 200))
  }
  const stop = () => {
    try {
      process.kill(-child.pid!, 'SIGTERM')
    } catch {
      /* gone */
    }
    running.delete(stop)
  }
  running.add(stop)
  return { url, healthz, stop, log: () => log }
}

const REQUEST = {
  prompt: 'a large red circle in the centre on a white background',
  seed: 11,
  steps: 8,
}

describe('edge → GPU backend through wrangler dev', () => {
  let backend: ServerType
  let backendUrl: string
  let jobs = 0
  const extra: Server[] = []
  const listen = async (handler: Parameters<typeof createServer>[1]) => {
    const s = createServer(handler)
    // As the real backend does (scripts/gpu-server.ts): no idle close under workerd's pool.
    s.keepAliveTimeout = 65_000
    extra.push(s)
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`
  }

  beforeAll(async () => {
    const model = await loadModel(folderSource(MODEL_DIR), createNodeBackend('cpu'))
    const app = createBackendApp({
      models: [new StableDiffusionPipeline(model)],
      secret: SECRET,
      onJobStart: () => jobs++,
    })
    backend = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
    await new Promise((r) => backend.once('listening', r))
    backendUrl = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`
  })
  afterAll(() => {
    backend?.close()
    extra.forEach((s) => s.close())
  })

  it('generates on the cpu backend; the image matches the in-edge WebAssembly path within ±1', async () => {
    const worker = await startWorker({ GPU_BACKEND_URLS: backendUrl, GPU_BACKEND_SECRET: SECRET })
    try {
      const res = await worker.generate(REQUEST)
      expect(res.status, worker.log()).toBe(200)
      expect(res.headers.get('x-cache')).toBe('MISS')
      expect(jobs).toBe(1)
      const remote = new Uint8Array(await res.arrayBuffer())
      const again = await worker.generate(REQUEST)
      expect(again.headers.get('x-cache')).toBe('HIT')
      expect(Buffer.from(await again.arrayBuffer()).equals(Buffer.from(remote))).toBe(true)
      expect(jobs).toBe(1)

      // The in-edge path: the same pipeline on onnxruntime-web's WebAssembly build, as in workerd.
      const wasm = createPipelineEngine([
        new StableDiffusionPipeline(
          await loadModel(folderSource(MODEL_DIR), createWebBackend('node')),
        ),
      ])
      const info = wasm.models()[0]
      const [local] = await wasm.generate({
        model: info.id,
        prompt: REQUEST.prompt,
        negativePrompt: '',
        seed: REQUEST.seed,
        steps: REQUEST.steps,
        guidanceScale: info.defaults.guidance_scale,
        width: info.defaults.width,
        height: info.defaults.height,
        scheduler: info.defaults.scheduler,
        n: 1,
        truncate: false,
        options: {},
      })
      const { decodePngRgb } = await import('./png-decode')
      const a = decodePngRgb(remote)
      const b = decodePngRgb(local.bytes)
      let differ = 0
      for (let i = 0; i < a.length; i++) {
        expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1)
        if (a[i] !== b[i]) differ++
      }
      expect(differ / a.length).toBeLessThan(0.01)
    } finally {
      worker.stop()
    }
  }, 300_000)

  it('maps backend failures to 502/503/504 problems and caches nothing', async () => {
    const garbage = await listen((_q, r) => {
      r.writeHead(200, { 'content-type': 'application/vnd.tti.frames' })
      r.end('Ixxxxnot a frame')
    })
    const slow = await listen(() => {
      /* never answers */
    })
    const cases: [string, Record<string, string>, number][] = [
      ['down', { GPU_BACKEND_URLS: 'http://127.0.0.1:9', GPU_BACKEND_SECRET: SECRET }, 503],
      [
        'wrong signature',
        { GPU_BACKEND_URLS: backendUrl, GPU_BACKEND_SECRET: 'not-the-secret' },
        502,
      ],
      ['garbage', { GPU_BACKEND_URLS: garbage, GPU_BACKEND_SECRET: SECRET }, 502],
      [
        'slow',
        { GPU_BACKEND_URLS: slow, GPU_BACKEND_SECRET: SECRET, GPU_BACKEND_TIMEOUT_MS: '1500' },
        504,
      ],
    ]
    for (const [name, vars, status] of cases) {
      const worker = await startWorker(vars)
      try {
        for (let attempt = 0; attempt < 2; attempt++) {
          const res = await worker.generate({ ...REQUEST, seed: 500 })
          if (res.status !== status) await new Promise((r) => setTimeout(r, 1500))
          // A retry may meet the backend's open circuit: in an isolate that saw the failure it
          // repeats its status; in one that only learnt of it from the shared probes it is 503.
          const allowed = attempt === 1 && status === 502 ? [502, 503] : [status]
          expect(allowed, `${name} attempt ${attempt}: ${worker.log()}`).toContain(res.status)
          expect(res.headers.get('content-type')).toBe('application/problem+json')
          const body = (await res.json()) as { type: string; status: number }
          expect(body.status).toBe(res.status)
        }
      } finally {
        worker.stop()
      }
    }
  }, 600_000) // four wrangler dev starts, each loads the bundled model
})

describe('edge → `npm run gpu` on the wasm provider (wrangler --env gpu)', () => {
  let backend: Awaited<ReturnType<typeof startBackendProcess>>
  const servers: Server[] = []
  afterAll(() => {
    backend?.stop()
    servers.forEach((s) => s.close())
  })

  it('returns the in-edge bytes exactly, prefers the backends the cron found healthy, and encodes on the backend when placed there', async () => {
    backend = await startBackendProcess('wasm')
    const ready = await backend.healthz()
    expect(ready.body).toMatchObject({ ready: true, provider: 'onnxruntime-web:wasm' })
    expect(ready.body.models.map((m) => m.id)).toEqual([MODEL_ID])

    // The reference: a worker with no backend, generating in workerd on WebAssembly.
    const plain = await startWorker({})
    let edgeBytes: Buffer
    try {
      const res = await plain.generate(REQUEST)
      expect(res.status, plain.log()).toBe(200)
      edgeBytes = Buffer.from(await res.arrayBuffer())
    } finally {
      plain.stop()
    }

    // A sick backend listed first: /healthz says loading and jobs fail (counted).
    const sick = { jobs: 0, probes: 0 }
    const s = createServer((q, r) => {
      if (q.url === '/healthz') sick.probes++
      else sick.jobs++
      r.writeHead(503, { 'content-type': 'application/json' })
      r.end(JSON.stringify({ ready: false, status: 'loading', models: [] }))
    })
    s.keepAliveTimeout = 65_000
    servers.push(s)
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const sickUrl = `http://127.0.0.1:${(s.address() as AddressInfo).port}`

    const edge = await startWorker(
      { GPU_BACKEND_URLS: `${sickUrl},${backend.url}`, GPU_BACKEND_SECRET: SECRET },
      { env: 'gpu' },
    )
    try {
      const cron = await fetch(`${edge.base}/__scheduled?cron=*+*+*+*+*`)
      expect(cron.status, edge.log()).toBe(200)
      expect(sick.probes).toBe(1)
      const res = await edge.generate(REQUEST)
      expect(res.status, `${edge.log()}\nbackend:\n${backend.log()}`).toBe(200)
      expect(Buffer.from(await res.arrayBuffer()).equals(edgeBytes)).toBe(true)
      // The shared probe ranked the sick backend last, so the job went straight to the good one.
      expect(sick.jobs).toBe(0)
      expect((await backend.healthz()).body.jobs).toMatchObject({ started: 1, promptsEncoded: 0 })
    } finally {
      edge.stop()
    }

    // The text encoder forced onto the backend: token ids cross the wire, the bytes stay the same.
    const remoteEncoder = await startWorker(
      { GPU_BACKEND_URLS: backend.url, GPU_BACKEND_SECRET: SECRET, GPU_TEXT_ENCODER: 'backend' },
      { env: 'gpu' },
    )
    try {
      const res = await remoteEncoder.generate(REQUEST)
      expect(res.status, `${remoteEncoder.log()}\nbackend:\n${backend.log()}`).toBe(200)
      expect(Buffer.from(await res.arrayBuffer()).equals(edgeBytes)).toBe(true)
      // Guidance is on by default: the prompt and the negative prompt were encoded there.
      expect((await backend.healthz()).body.jobs).toMatchObject({ started: 2, promptsEncoded: 2 })
    } finally {
      remoteEncoder.stop()
    }
  }, 900_000)
})

describe('a model that lives only on the backend (wrangler --env gpu)', () => {
  let backend: Awaited<ReturnType<typeof startBackendProcess>> | undefined
  afterAll(() => backend?.stop())

  it('is listed, validated and keyed at the edge from its manifest, and generates there', async () => {
    const golden = join(ROOT, '..', 'shared', 'golden', 'pipeline', 'tiny-sd-optimum')
    const img2img = join(ROOT, '..', 'shared', 'golden', 'pipeline', 'tiny-sd-img2img')
    backend = await startBackendProcess('cpu', [MODEL_DIR, golden, img2img])
    const edge = await startWorker(
      { GPU_BACKEND_URLS: backend.url, GPU_BACKEND_SECRET: SECRET },
      { env: 'gpu' },
    )
    try {
      const { models } = await edge.models()
      expect(models.map((m) => m.id)).toEqual([MODEL_ID, 'tiny-sd-optimum', 'tiny-sd-img2img'])
      const body = {
        model: 'tiny-sd-optimum',
        prompt: 'a red circle',
        seed: 9,
        steps: 4,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        scheduler: 'euler_a',
      }
      const res = await edge.generate(body)
      expect(res.status, `${edge.log()}\nbackend:\n${backend.log()}`).toBe(200)
      expect(res.headers.get('x-cache')).toBe('MISS')
      const bytes = Buffer.from(await res.arrayBuffer())
      // The same pipeline on the same provider, locally: the very same PNG.
      const local = createPipelineEngine([
        new StableDiffusionPipeline(
          await loadModel(folderSource(golden), createNodeBackend('cpu')),
        ),
      ])
      const [want] = await local.generate({
        model: 'tiny-sd-optimum',
        prompt: body.prompt,
        negativePrompt: '',
        seed: body.seed,
        steps: body.steps,
        guidanceScale: body.guidance_scale,
        width: 64,
        height: 64,
        scheduler: body.scheduler,
        n: 1,
        truncate: false,
        options: {},
      })
      expect(bytes.equals(Buffer.from(want.bytes))).toBe(true)
      const again = await edge.generate(body)
      expect(again.headers.get('x-cache')).toBe('HIT')
      await again.arrayBuffer()
      // Validation uses the manifest's limits: this model's size limit, not the bundled one's.
      const tooBig = await edge.generate({ ...body, width: 128 })
      expect(tooBig.status).toBe(422)
      await tooBig.arrayBuffer()
      expect((await backend.healthz()).body.jobs).toMatchObject({ started: 1, promptsEncoded: 2 })

      // An init picture travels to the backend as pixels; the backend runs the VAE encoder.
      const picture = readFileSync(
        join(ROOT, '..', 'shared', 'golden', 'pipeline', 'inputs', 'gradient_disc_64x64.png'),
      )
      const edit = { ...body, model: 'tiny-sd-img2img', strength: 0.6 }
      delete (edit as Partial<typeof edit>).width
      delete (edit as Partial<typeof edit>).height
      const edited = await edge.generate({ ...edit, image: picture.toString('base64') })
      expect(edited.status, `${edge.log()}\nbackend:\n${backend.log()}`).toBe(200)
      const editedBytes = Buffer.from(await edited.arrayBuffer())
      const localEdit = createPipelineEngine([
        new StableDiffusionPipeline(
          await loadModel(folderSource(img2img), createNodeBackend('cpu')),
        ),
      ])
      const sha = createHash('sha256').update(picture).digest('hex')
      const { rgb } = await decodePicture('image', new Uint8Array(picture))
      const [wantEdit] = await localEdit.generate({
        model: 'tiny-sd-img2img',
        prompt: body.prompt,
        negativePrompt: '',
        seed: body.seed,
        steps: body.steps,
        guidanceScale: body.guidance_scale,
        width: 64,
        height: 64,
        scheduler: body.scheduler,
        n: 1,
        truncate: false,
        options: { strength: 0.6 },
        pictures: { image: { sha256: sha, width: 64, height: 64, data: rgb } },
      })
      expect(editedBytes.equals(Buffer.from(wantEdit.bytes))).toBe(true)
    } finally {
      edge.stop()
    }
  }, 600_000)
})
