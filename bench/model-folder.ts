/**
 * Benchmark (not a test): any model folder, the project's pipeline against raw onnxruntime-node
 * on the same graphs, in one run. Each side runs in its own process, so each peak resident
 * memory is its own:
 * - raw: `training/check_export.mjs` (sessions created from the file paths, then the text encoder,
 *   `--steps` UNet calls at batch 2 and one VAE decode, with no pipeline code);
 * - project: `loadModel` + `StableDiffusionPipeline.generate` on onnxruntime-node's CPU provider
 *   on a worker thread, as `npm run gpu` serves it (guidance 7.5, so the UNet runs at batch 2).
 *
 *   npm run bench -- --model /path/to/sd-turbo-onnx --size 512 --steps 1
 *
 * Prints a Markdown row per side: load, UNet per step, VAE decode, whole image, peak RSS.
 */
import { execFileSync } from 'node:child_process'
import { statSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createNodeBackend } from '../src/gpu/ort-node'
import { folderSource } from '../src/node/folder-source'
import { loadModel } from '../src/pipeline/model'
import { StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'
import type { InferenceBackend } from '../src/pipeline/tensor'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What each side reports (ms, MB). */
interface Side {
  load_ms: number
  unet_ms: number
  vae_ms: number
  image_ms?: number
  peak_rss_mb: number
}

/** Wraps a backend to time each component's runs. */
function timed(backend: InferenceBackend, runs: Record<string, number[]>): InferenceBackend {
  return {
    name: backend.name,
    readsFiles: backend.readsFiles,
    async createSession(model, options) {
      const s = await backend.createSession(model, options)
      const label = options?.label ?? 'model'
      return {
        inputs: s.inputs,
        outputs: s.outputs,
        release: () => s.release(),
        async run(feeds, names) {
          const t0 = performance.now()
          try {
            return await s.run(feeds, names)
          } finally {
            ;(runs[label] ??= []).push(performance.now() - t0)
          }
        },
      }
    },
  }
}

async function projectSide(dir: string, size: number, steps: number): Promise<Side> {
  const runs: Record<string, number[]> = {}
  const t0 = performance.now()
  const model = await loadModel(
    folderSource(dir),
    timed(createNodeBackend('cpu', { thread: true }), runs),
  )
  const load = performance.now() - t0
  const pipe = new StableDiffusionPipeline(model)
  const t1 = performance.now()
  await pipe.generate({
    prompt: 'a photo of a cat',
    seed: 1,
    steps,
    guidanceScale: 7.5,
    width: size,
    height: size,
    scheduler: 'EulerDiscreteScheduler',
  })
  const image = performance.now() - t1
  const mean = (xs: number[] = []) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
  return {
    load_ms: load,
    unet_ms: mean(runs.unet),
    vae_ms: mean(runs.vae_decoder),
    image_ms: image,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  }
}

function rawSide(dir: string, size: number, steps: number): Side {
  const out = execFileSync(
    process.execPath,
    [
      join(ROOT, 'training/check_export.mjs'),
      dir,
      '--size',
      String(size),
      '--steps',
      String(steps),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  )
  const r = JSON.parse(out.trim().split('\n').pop() as string)
  const load = Object.values(r.load_ms as Record<string, number>).reduce((a, b) => a + b, 0)
  return {
    load_ms: load,
    unet_ms: r.unet_ms_mean,
    vae_ms: r.vae_ms,
    image_ms: r.text_ms + r.unet_ms_mean * steps + r.vae_ms,
    peak_rss_mb: r.peak_rss_mb,
  }
}

function folderBytes(dir: string): number {
  let total = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? folderBytes(p) : statSync(p).size
  }
  return total
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      size: { type: 'string', default: '512' },
      steps: { type: 'string', default: '1' },
      child: { type: 'boolean', default: false },
    },
  })
  if (!values.model) throw new Error('usage: npm run bench -- --model DIR [--size 512] [--steps 1]')
  const dir = resolve(values.model)
  const size = Number(values.size)
  const steps = Number(values.steps)
  if (values.child) {
    console.log(JSON.stringify(await projectSide(dir, size, steps)))
    return
  }
  const project = JSON.parse(
    execFileSync(
      process.execPath,
      [
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        '--child',
        '--model',
        dir,
        '--size',
        String(size),
        '--steps',
        String(steps),
      ],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    )
      .trim()
      .split('\n')
      .pop() as string,
  ) as Side
  const raw = rawSide(dir, size, steps)
  const gb = (folderBytes(dir) / 2 ** 30).toFixed(2)
  const f = (x: number) => (x / 1000).toFixed(1)
  console.log(`\n${dir} (${gb} GiB), ${size}x${size}, ${steps} step(s), CFG (UNet batch 2)`)
  console.log('| side | load s | UNet/step s | VAE decode s | image s | peak RSS GB |')
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const [name, s] of [
    ['raw onnxruntime-node', raw],
    ['project (pipeline, worker thread)', project],
  ] as const)
    console.log(
      `| ${name} | ${f(s.load_ms)} | ${f(s.unet_ms)} | ${f(s.vae_ms)} | ${f(s.image_ms ?? 0)} | ${(s.peak_rss_mb / 1024).toFixed(2)} |`,
    )
  console.log(
    `ratios project/raw: peak RSS ${(project.peak_rss_mb / raw.peak_rss_mb).toFixed(2)}, UNet step ${(project.unet_ms / raw.unet_ms).toFixed(3)}, VAE ${(project.vae_ms / raw.vae_ms).toFixed(3)}, load ${(project.load_ms / raw.load_ms).toFixed(2)}`,
  )
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`)
  process.exit(2)
})
