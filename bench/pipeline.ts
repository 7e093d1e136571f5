/**
 * Benchmark (not a test): where the time of one generation goes.
 *
 *   npm run bench
 *
 * For each model at 64x64, 20 steps, guidance 7.5 on onnxruntime-node (CPU): whole-image time,
 * time inside ONNX sessions, and the pipeline's own overhead (everything else: tokenizer,
 * randn, schedulers, guidance, RGB conversion). Prints a Markdown table.
 */
import { existsSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { createNodeBackend } from '../src/gpu/ort-node'
import type { InferenceBackend, ModelSession } from '../src/gpu/tensor'
import { folderSource } from '../src/node/folder-source'
import { loadModel } from '../src/pipeline/model'
import { encodePng } from '../src/pipeline/png'
import { StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'

const root = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url))
const MODELS: [string, string][] = [
  ['tiny-shapes (bundled)', root('models/tiny-shapes')],
  ['tiny-sd (golden)', root('../shared/golden/pipeline/tiny-sd-optimum')],
]
const RUNS = Number(process.env.BENCH_RUNS ?? 5)

/** Wraps a backend so every session run adds its wall time to `timer.ms` and counts calls. */
function timed(
  backend: InferenceBackend,
  timer: { ms: number; calls: Record<string, number>; perCall: Record<string, number> },
): InferenceBackend {
  return {
    name: backend.name,
    async createSession(model, options) {
      const s = await backend.createSession(model, options)
      const label = options?.label ?? 'model'
      const wrapped: ModelSession = {
        inputs: s.inputs,
        outputs: s.outputs,
        release: () => s.release(),
        async run(feeds, names) {
          const t0 = performance.now()
          try {
            return await s.run(feeds, names)
          } finally {
            const dt = performance.now() - t0
            timer.ms += dt
            timer.calls[label] = (timer.calls[label] ?? 0) + 1
            timer.perCall[label] = (timer.perCall[label] ?? 0) + dt
          }
        },
      }
      return wrapped
    },
  }
}

async function main() {
  console.log(
    `machine: ${cpus().length} x ${cpus()[0]?.model}, node ${process.version}, runs per row: ${RUNS}\n`,
  )
  console.log(
    '| model | backend | image (ms) | in ONNX (ms) | UNet per step (ms) | overhead (ms) | overhead % | PNG encode (ms) |',
  )
  console.log('|---|---|---:|---:|---:|---:|---:|---:|')
  for (const [name, dir] of MODELS) {
    if (!existsSync(dir)) continue
    const timer = {
      ms: 0,
      calls: {} as Record<string, number>,
      perCall: {} as Record<string, number>,
    }
    const model = await loadModel(folderSource(dir), timed(createNodeBackend('cpu'), timer))
    const pipe = new StableDiffusionPipeline(model)
    const params = {
      prompt: 'a small red circle on a white background',
      seed: 1,
      steps: 20,
      guidanceScale: 7.5,
      width: 64,
      height: 64,
      scheduler: 'DDIMScheduler',
    }
    await pipe.generate(params) // warm-up (also fills the prompt-embedding cache, as a server would)
    let total = 0
    let png = 0
    timer.ms = 0
    timer.calls = {}
    timer.perCall = {}
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now()
      const res = await pipe.generate({ ...params, seed: r })
      total += performance.now() - t0
      const t1 = performance.now()
      encodePng(res.images[0])
      png += performance.now() - t1
    }
    const onnx = timer.ms / RUNS
    const image = total / RUNS
    const unetStep = timer.perCall.unet / timer.calls.unet
    console.log(
      `| ${name} | ${createNodeBackend('cpu').name} | ${image.toFixed(1)} | ${onnx.toFixed(1)} | ${unetStep.toFixed(2)} | ${(image - onnx).toFixed(2)} | ${(((image - onnx) / image) * 100).toFixed(1)} | ${(png / RUNS).toFixed(2)} |`,
    )
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
