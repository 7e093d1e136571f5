/**
 * Benchmark (not a test): where the time of a generation goes, per backend.
 *
 *   npm run bench                # all backends; BENCH_RUNS=5 by default
 *   npm run bench -- --model DIR [--size 512] [--steps 1]   # any model folder vs raw ORT
 *                                                           # (`./model-folder.ts`)
 *   npm run bench -- --batch     # backend throughput, batching off vs on (`./batch.ts`)
 *
 * For each model at 64x64, 20 DDIM steps, guidance 7.5 (batched guidance halves):
 * - whole-image time, time inside ONNX sessions, UNet time per step, and the pipeline's own
 *   overhead (everything else: tokenizer, randn, schedulers, guidance, RGB conversion);
 * - images per second at batch 1 and batch 4 (n = 4 in one call);
 * on WebAssembly (onnxruntime-web in Node, one thread as in workerd), onnxruntime-node CPU, and
 * WebGPU (onnxruntime-node over SwiftShader where no GPU exists); then the edge-to-backend
 * overhead per image (signed HTTP job to the backend service on localhost vs the same pipeline
 * called in-process). Prints Markdown tables.
 */
import { serve } from '@hono/node-server'
import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { createBackendApp } from '../src/backend/service'
import { createNodeBackend } from '../src/gpu/ort-node'
import { createWebBackend } from '../src/gpu/ort-web'
import { createRemoteEngine } from '../src/engine/remote-engine'
import type { InferenceBackend } from '../src/pipeline/tensor'
import { timedBackend } from './timed-backend'
import { folderSource } from '../src/node/folder-source'
import { createPipelineEngine } from '../src/engine/local-engine'
import type { TextToImageEngine } from '../src/engine/types'
import { loadModel } from '../src/pipeline/model'
import { StableDiffusionPipeline, type GenerateParams } from '../src/pipeline/stable-diffusion'

const root = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url))
const MODELS: [string, string][] = [
  ['tiny-shapes', root('models/tiny-shapes')],
  ['tiny-sd (golden)', root('../shared/golden/pipeline/tiny-sd-optimum')],
]
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json'
process.env.VK_ICD_FILENAMES ??= ICD

interface Timer {
  ms: number
  unetMs: number
  unetCalls: number
}

/** Wraps a backend so every session run adds its wall time to the timer. */
function timed(backend: InferenceBackend, timer: Timer): InferenceBackend {
  return timedBackend(backend, (label, ms) => {
    timer.ms += ms
    if (label === 'unet') {
      timer.unetMs += ms
      timer.unetCalls++
    }
  })
}

const PARAMS: GenerateParams = {
  prompt: 'a small red circle on a white background',
  seed: 1,
  steps: 20,
  guidanceScale: 7.5,
  width: 64,
  height: 64,
  scheduler: 'DDIMScheduler',
}

async function measure(pipe: StableDiffusionPipeline, timer: Timer, runs: number, n: number) {
  await pipe.generate({ ...PARAMS, numImages: n }) // warm-up; fills the prompt-embedding cache as a server would
  Object.assign(timer, { ms: 0, unetMs: 0, unetCalls: 0 })
  const t0 = performance.now()
  for (let r = 0; r < runs; r++) await pipe.generate({ ...PARAMS, seed: r, numImages: n })
  const call = (performance.now() - t0) / runs
  return { call, onnx: timer.ms / runs, unetStep: timer.unetMs / timer.unetCalls }
}

async function main() {
  const cpu = cpus()
  console.log(
    `machine: ${cpu.length} x ${cpu[0]?.model}, node ${process.version}; ${RUNS} runs per cell (WebGPU: 1)`,
  )
  console.log('settings: 64x64, 20 DDIM steps, guidance 7.5, times in ms\n')
  console.log(
    '| model | backend | image | in ONNX | UNet/step | overhead | overhead % | img/s (n=1) | img/s (n=4) |',
  )
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|')
  const backends: [string, () => InferenceBackend, number][] = [
    ['wasm (ort-web, 1 thread)', () => createWebBackend('node'), RUNS],
    ['ort-node cpu', () => createNodeBackend('cpu'), RUNS],
  ]
  // WebGPU over SwiftShader takes ~50 s per image: measured once, on the first model only.
  // BENCH_WEBGPU=0 skips it.
  if (process.env.BENCH_WEBGPU !== '0' && existsSync(process.env.VK_ICD_FILENAMES ?? ICD))
    backends.push(['ort-node webgpu (SwiftShader)', () => createNodeBackend('webgpu'), 1])
  for (const [name, dir] of MODELS) {
    if (!existsSync(dir)) continue
    for (const [label, make, runs] of backends) {
      if (label.includes('webgpu') && name !== MODELS[0][0]) continue
      const timer: Timer = { ms: 0, unetMs: 0, unetCalls: 0 }
      const pipe = new StableDiffusionPipeline(
        await loadModel(folderSource(dir), timed(make(), timer)),
      )
      const one = await measure(pipe, timer, runs, 1)
      const four = await measure(pipe, timer, runs, 4)
      const overhead = one.call - one.onnx
      console.log(
        `| ${name} | ${label} | ${one.call.toFixed(1)} | ${one.onnx.toFixed(1)} | ${one.unetStep.toFixed(2)} | ${overhead.toFixed(2)} | ${((overhead / one.call) * 100).toFixed(1)} | ${(1000 / one.call).toFixed(2)} | ${((4 * 1000) / four.call).toFixed(2)} |`,
      )
    }
  }

  // Edge-to-backend overhead: the same CPU pipeline, in-process vs through the signed HTTP job.
  const dir = MODELS.find(([, d]) => existsSync(d))![1]
  const model = await loadModel(folderSource(dir), createNodeBackend('cpu'))
  const models = [new StableDiffusionPipeline(model)]
  const app = createBackendApp({ models, secret: 'bench-secret', resultTtlMs: 0 })
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  await new Promise((r) => server.once('listening', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const local = createPipelineEngine(models)
  const remote = createRemoteEngine(models, { urls: [url], secret: 'bench-secret' })
  const req = {
    model: model.spec.id,
    prompt: PARAMS.prompt,
    negativePrompt: '',
    seed: 0,
    steps: 20,
    guidanceScale: 7.5,
    width: 64,
    height: 64,
    scheduler: 'DDIMScheduler',
    n: 1,
    truncate: true,
    options: {},
  }
  const time = async (engine: TextToImageEngine) => {
    await engine.generate(req)
    const t0 = performance.now()
    for (let r = 0; r < RUNS; r++) await engine.generate({ ...req, seed: 1000 + r })
    return (performance.now() - t0) / RUNS
  }
  const inProcess = await time(local)
  const viaHttp = await time(remote)
  server.close()
  console.log('\n| path (ort-node cpu, PNG included) | ms per image |')
  console.log('|---|---:|')
  console.log(`| in-process engine | ${inProcess.toFixed(1)} |`)
  console.log(`| edge client → backend service over HTTP | ${viaHttp.toFixed(1)} |`)
  console.log(`| edge-to-backend overhead | ${(viaHttp - inProcess).toFixed(1)} |`)
}

// `--model DIR`: the any-folder mode, project against raw onnxruntime-node (its own module);
// `--batch`: the backend's batching (its own module too).
const mode = ['--model', '--batch'].find((m) => process.argv.includes(m))
const run =
  mode === '--model'
    ? () => import('./model-folder').then(() => undefined)
    : mode === '--batch'
      ? () => import('./batch').then(() => undefined)
      : main
run().then(
  () => (mode ? undefined : process.exit(0)),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
