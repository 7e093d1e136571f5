/**
 * Benchmark (not a test): throughput of the GPU backend with batching off and on.
 *
 *   npm run bench -- --batch          # BENCH_RUNS=5 rounds per cell, K = 4 and 8
 *   BENCH_PROVIDERS=cuda npm run bench -- --batch   # on a machine with a GPU
 *
 * Per model (64x64, 20 DDIM steps, guidance 7.5, the settings of `npm run bench`): rounds of K
 * concurrent jobs with distinct seeds, sent as the edge sends them (signed HTTP jobs through the
 * remote engine) to a backend service on localhost whose sessions run as `npm run gpu` runs them
 * (onnxruntime-node on a worker thread, one run slot). Batching off runs the K jobs one after the
 * other; on (`batch: { maxJobs: K, windowMs: 20 }`) runs them as one batch. Rounds alternate
 * between the two services (this machine is shared and noisy); each cell is the median round.
 * Prints images per second both ways, their ratio, and UNet calls per round, as a Markdown table.
 */
import { serve } from '@hono/node-server'
import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { createBackendApp } from '../src/backend/service'
import type { BatchOptions } from '../src/backend/batcher'
import { createRemoteEngine } from '../src/engine/remote-engine'
import type { GenerateRequest } from '../src/engine/types'
import { createNodeBackend } from '../src/gpu/ort-node'
import { folderSource } from '../src/node/folder-source'
import { loadModel } from '../src/pipeline/model'
import { StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'
import { timedBackend } from './timed-backend'

const root = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url))
const MODELS: [string, string][] = [
  ['tiny-shapes', root('models/tiny-shapes')],
  ['tiny-sd (golden)', root('../shared/golden/pipeline/tiny-sd-optimum')],
]
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const WINDOW_MS = 20
const SIZES = [4, 8]
const PROVIDERS = process.env.BENCH_PROVIDERS ?? 'cpu'
const SECRET = 'bench-secret'

/** A backend service on a free port; `close` stops it. */
async function backendAt(models: StableDiffusionPipeline[], batch?: BatchOptions) {
  const app = createBackendApp({ models, secret: SECRET, resultTtlMs: 0, batch })
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  await new Promise((r) => server.once('listening', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => server.close(),
  }
}

async function main() {
  const cpu = cpus()
  console.log(
    `machine: ${cpu.length} x ${cpu[0]?.model}, node ${process.version}; provider ${PROVIDERS} (worker thread); ${RUNS} rounds per cell`,
  )
  console.log('settings: 64x64, 20 DDIM steps, guidance 7.5; K concurrent jobs per round\n')
  console.log(
    '| model | K | img/s, batching off | img/s, batching on | on / off | UNet calls off → on |',
  )
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const [name, dir] of MODELS) {
    if (!existsSync(dir)) continue
    const calls = { unet: 0 }
    const backend = timedBackend(createNodeBackend(PROVIDERS, { thread: true }), (label) => {
      if (label === 'unet') calls.unet++
    })
    const models = [new StableDiffusionPipeline(await loadModel(folderSource(dir), backend))]
    const req = (seed: number): GenerateRequest => ({
      model: models[0].spec.id,
      prompt: 'a small red circle on a white background',
      negativePrompt: '',
      seed,
      steps: 20,
      guidanceScale: 7.5,
      width: 64,
      height: 64,
      scheduler: 'DDIMScheduler',
      n: 1,
      truncate: true,
      options: {},
    })
    let seed = 0
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
    for (const k of SIZES) {
      const services = [
        await backendAt(models),
        await backendAt(models, { maxJobs: k, windowMs: WINDOW_MS }),
      ]
      const remotes = services.map((s) =>
        createRemoteEngine(models, { urls: [s.url], secret: SECRET }),
      )
      const rates: number[][] = [[], []]
      const unet: number[][] = [[], []]
      /** One round of k concurrent jobs: images per second and UNet calls. */
      const round = async (i: number) => {
        const before = calls.unet
        const t0 = performance.now()
        await Promise.all(Array.from({ length: k }, () => remotes[i].generate(req(seed++))))
        return { rate: (k * 1000) / (performance.now() - t0), unet: calls.unet - before }
      }
      for (const i of [0, 1]) await round(i) // warm-up: sessions, embedding cache, connections
      for (let r = 0; r < RUNS; r++)
        for (const i of [0, 1]) {
          const got = await round(i)
          rates[i].push(got.rate)
          unet[i].push(got.unet)
        }
      for (const s of services) s.close()
      const [off, on] = rates.map(median)
      console.log(
        `| ${name} | ${k} | ${off.toFixed(2)} | ${on.toFixed(2)} | ${(on / off).toFixed(2)} | ${median(unet[0])} → ${median(unet[1])} |`,
      )
    }
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
