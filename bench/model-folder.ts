/**
 * Benchmark (not a test): any model folder, the project's pipeline against raw onnxruntime-node
 * on the same graphs, in one run. Each side runs in its own process, so each peak resident
 * memory is its own, and the sides alternate for `--rounds` rounds (best of each is reported):
 * - raw: `training/check_export.mjs` (sessions created from the file paths, then the text encoder,
 *   `--steps` UNet calls at batch 2 and one VAE decode, with no pipeline code);
 * - project: `loadModel` + `StableDiffusionPipeline.generate` on onnxruntime-node on a worker
 *   thread, as `npm run gpu` serves it (guidance 7.5, so the UNet runs at batch 2).
 * Both use the `cpu` provider unless `TTI_BENCH_PROVIDERS` names others (`webgpu` on a GPU host).
 * With more than one step, the first UNet call (ONNX Runtime's warm-up) is left out of the
 * per-step time on both sides.
 *
 *   npm run bench -- --model /path/to/sd-turbo-onnx --size 512 --steps 3 --rounds 2
 *
 * Prints a Markdown table: load, UNet per step, VAE decode, whole image, peak RSS, and ratios.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createNodeBackend } from '../src/gpu/ort-node'
import { folderSource } from '../src/node/folder-source'
import { loadModel } from '../src/pipeline/model'
import { StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'
import { timedBackend } from './timed-backend'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Execution providers of both sides. */
const PROVIDERS = process.env.TTI_BENCH_PROVIDERS ?? 'cpu'

/** What each side reports (ms, MB). */
interface Side {
  load_ms: number
  unet_ms: number
  vae_ms: number
  image_ms: number
  peak_rss_mb: number
}

/** Mean of the UNet calls after the first (ONNX Runtime's warm-up), or of the only one. */
const steadyMean = (xs: number[]) => {
  const steady = xs.length > 1 ? xs.slice(1) : xs
  return steady.reduce((a, b) => a + b, 0) / Math.max(1, steady.length)
}

async function projectSide(dir: string, size: number, steps: number): Promise<Side> {
  const runs: Record<string, number[]> = {}
  const backend = timedBackend(createNodeBackend(PROVIDERS, { thread: true }), (label, ms) =>
    (runs[label] ??= []).push(ms),
  )
  const t0 = performance.now()
  const model = await loadModel(folderSource(dir), backend)
  const load = performance.now() - t0
  const t1 = performance.now()
  await new StableDiffusionPipeline(model).generate({
    prompt: 'a photo of a cat',
    seed: 1,
    steps,
    guidanceScale: 7.5,
    width: size,
    height: size,
    scheduler: 'EulerDiscreteScheduler',
  })
  return {
    load_ms: load,
    unet_ms: steadyMean(runs.unet ?? []),
    vae_ms: runs.vae_decoder?.[0] ?? NaN,
    image_ms: performance.now() - t1,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  }
}

/** Runs `args` with this Node and returns the last line of its output as JSON. */
function lastJsonLine(args: string[]): Record<string, unknown> {
  const out = execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 })
  return JSON.parse(out.trim().split('\n').pop() as string)
}

function rawSide(dir: string, size: number, steps: number): Side {
  const r = lastJsonLine([
    join(ROOT, 'training/check_export.mjs'),
    dir,
    ...['--size', String(size), '--steps', String(steps), '--providers', PROVIDERS],
  ]) as {
    load_ms: Record<string, number>
    text_ms: number
    unet_ms: number[]
    vae_ms: number
    peak_rss_mb: number
  }
  return {
    load_ms: Object.values(r.load_ms).reduce((a, b) => a + b, 0),
    unet_ms: steadyMean(r.unet_ms),
    vae_ms: r.vae_ms,
    image_ms: r.text_ms + r.unet_ms.reduce((a, b) => a + b, 0) + r.vae_ms,
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

/** The best (smallest) of each metric over the rounds; peak memory is the largest seen. */
function best(sides: Side[]): Side {
  const min = (k: keyof Side) => Math.min(...sides.map((s) => s[k]))
  return {
    load_ms: min('load_ms'),
    unet_ms: min('unet_ms'),
    vae_ms: min('vae_ms'),
    image_ms: min('image_ms'),
    peak_rss_mb: Math.max(...sides.map((s) => s.peak_rss_mb)),
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      size: { type: 'string', default: '512' },
      steps: { type: 'string', default: '2' },
      rounds: { type: 'string', default: '1' },
      child: { type: 'boolean', default: false },
    },
  })
  if (!values.model)
    throw new Error('usage: npm run bench -- --model DIR [--size 512] [--steps 2] [--rounds 1]')
  const dir = resolve(values.model)
  const size = Number(values.size)
  const steps = Number(values.steps)
  if (values.child) {
    console.log(JSON.stringify(await projectSide(dir, size, steps)))
    return
  }
  const projects: Side[] = []
  const raws: Side[] = []
  for (let round = 0; round < Number(values.rounds); round++) {
    const args = ['--model', dir, '--size', String(size), '--steps', String(steps)]
    projects.push(
      lastJsonLine([
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        '--child',
        ...args,
      ]) as never,
    )
    raws.push(rawSide(dir, size, steps))
  }
  const project = best(projects)
  const raw = best(raws)
  const gb = (folderBytes(dir) / 2 ** 30).toFixed(2)
  const f = (x: number) => (x / 1000).toFixed(1)
  console.log(
    `\n${dir} (${gb} GiB), ${size}x${size}, ${steps} step(s), CFG (UNet batch 2), providers ${PROVIDERS}, best of ${values.rounds} round(s)`,
  )
  console.log('| side | load s | UNet/step s | VAE decode s | image s | peak RSS GB |')
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const [name, s] of [
    ['raw onnxruntime-node', raw],
    ['project (pipeline, worker thread)', project],
  ] as const)
    console.log(
      `| ${name} | ${f(s.load_ms)} | ${f(s.unet_ms)} | ${f(s.vae_ms)} | ${f(s.image_ms)} | ${(s.peak_rss_mb / 1024).toFixed(2)} |`,
    )
  console.log(
    `ratios project/raw: peak RSS ${(project.peak_rss_mb / raw.peak_rss_mb).toFixed(2)}, UNet step ${(project.unet_ms / raw.unet_ms).toFixed(3)}, VAE ${(project.vae_ms / raw.vae_ms).toFixed(3)}, image ${(project.image_ms / raw.image_ms).toFixed(3)}, load ${(project.load_ms / raw.load_ms).toFixed(2)}`,
  )
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`)
  process.exit(2)
})
