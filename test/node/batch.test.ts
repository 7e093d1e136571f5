/**
 * Batched generations (`StableDiffusionPipeline.generateBatch`, `src/pipeline/batch.ts`) against
 * the same generations run alone, on real ONNX sessions (onnxruntime-node, CPU): every golden case
 * of the four kinds batched with a partner of the other guidance kind (one UNet row per image vs
 * two), and mixed batches on the bundled model. Each member is held to the golden tolerances
 * against its unbatched run (and the golden case to its reference); on this provider members
 * with guidance (two rows or more of their own) are bit-identical, and one-row members differ by
 * ORT's batch-1 kernels: the measured worst cases are printed at the end.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import type { InferenceBackend } from '../../src/pipeline/tensor'
import {
  PipelineInputError,
  StableDiffusionPipeline,
  type GenerateParams,
  type GenerateResult,
} from '../../src/pipeline/stable-diffusion'
import { goldenParams } from '../browser/golden-params'
import { GOLDEN, goldenJson, maxAbs, maxAbsDiff } from './golden'

const TINY_SHAPES = fileURLToPath(new URL('../../models/tiny-shapes', import.meta.url))

/** A CPU backend whose UNet sessions count their runs (the sessions themselves are real). */
function countingBackend(counter: { unet: number }): InferenceBackend {
  const node = createNodeBackend('cpu')
  return {
    name: node.name,
    readsFiles: node.readsFiles,
    async createSession(model, opts) {
      const s = await node.createSession(model, opts)
      if (opts?.label !== 'unet') return s
      return { ...s, run: (f, o) => (counter.unet++, s.run(f, o)) }
    },
  }
}

const pipelines = new Map<
  string,
  Promise<{ pipe: StableDiffusionPipeline; calls: { unet: number } }>
>()
function pipelineFor(dir: string) {
  let p = pipelines.get(dir)
  if (!p) {
    const calls = { unet: 0 }
    p = loadModel(folderSource(dir), countingBackend(calls)).then((m) => ({
      pipe: new StableDiffusionPipeline(m),
      calls,
    }))
    pipelines.set(dir, p)
  }
  return p
}

/** Differences of a batched result from the same generation alone. */
interface Diff {
  latents: number
  maxPixel: number
  pixelsDiffering: number
  values: number
}
function diff(a: GenerateResult, b: GenerateResult): Diff {
  let maxPixel = 0
  let pixelsDiffering = 0
  let values = 0
  a.images.forEach((img, i) => {
    const other = b.images[i].data
    values += img.data.length
    for (let k = 0; k < img.data.length; k++) {
      const d = Math.abs(img.data[k] - other[k])
      if (d) pixelsDiffering++
      maxPixel = Math.max(maxPixel, d)
    }
  })
  return { latents: maxAbsDiff(a.latents, b.latents), maxPixel, pixelsDiffering, values }
}

/** Worst differences seen, per kind and per rows of a member's own UNet call. */
const worst = new Map<string, Diff & { members: number; identical: number }>()
function record(kind: string, rows: number, d: Diff) {
  const key = `${kind}, ${rows === 1 ? 'one row' : 'guidance (2 rows)'}`
  const w = worst.get(key) ?? {
    latents: 0,
    maxPixel: 0,
    pixelsDiffering: 0,
    values: 0,
    members: 0,
    identical: 0,
  }
  w.latents = Math.max(w.latents, d.latents)
  w.maxPixel = Math.max(w.maxPixel, d.maxPixel)
  w.pixelsDiffering += d.pixelsDiffering
  w.values += d.values
  w.members++
  if (d.latents === 0 && d.maxPixel === 0) w.identical++
  worst.set(key, w)
}
afterAll(() => {
  console.log('batched vs alone (onnxruntime-node cpu):')
  for (const [k, w] of worst)
    console.log(
      `  ${k}: ${w.identical}/${w.members} bit-identical; max |Δlatents| ${w.latents.toExponential(2)}, max |Δuint8| ${w.maxPixel}, ${w.pixelsDiffering}/${w.values} values differ`,
    )
})

/** Golden tolerances of a batched result against its unbatched run (README of golden, §4). */
function expectWithinGolden(batched: GenerateResult, alone: GenerateResult) {
  const d = diff(batched, alone)
  expect(d.latents).toBeLessThanOrEqual(1e-3 * Math.max(1, maxAbs(alone.latents)))
  expect(d.maxPixel).toBeLessThanOrEqual(1)
  expect(d.pixelsDiffering / d.values).toBeLessThanOrEqual(0.01)
  return d
}

/** Runs `jobs` alone, then as one batch; checks each member and counts the merged UNet calls. */
async function compare(dir: string, kind: string, jobs: GenerateParams[]) {
  const { pipe, calls } = await pipelineFor(dir)
  const alone: GenerateResult[] = []
  for (const j of jobs) alone.push(await pipe.generate(j))
  const before = calls.unet
  const batched = await Promise.all(pipe.generateBatch(jobs.map((params) => ({ params }))))
  const unetCalls = calls.unet - before
  for (const [i, job] of jobs.entries()) {
    const d = expectWithinGolden(batched[i], alone[i])
    const rows = (job.guidanceScale ?? 7.5) > 1 ? 2 : 1
    record(kind, rows, d)
    // On this provider a member that already batches two rows of its own gets the same bits.
    if (rows === 2) expect(d).toMatchObject({ latents: 0, maxPixel: 0 })
  }
  return { batched, alone, unetCalls }
}

/** The golden case's partner in a batch: another seed, and the other kind of guidance. */
function partner(p: GenerateParams): GenerateParams {
  return {
    ...p,
    prompt: 'a partner prompt',
    seed: p.seed + 1000,
    guidanceScale: (p.guidanceScale ?? 7.5) > 1 ? 1 : 5,
  }
}

const KINDS = [
  ['text-to-image', 'cases', ['tiny-sd-optimum', 'tiny-sd-legacy']],
  ['img2img', 'cases-img2img', []],
  ['inpaint', 'cases-inpaint', []],
  ['controlnet', 'cases-controlnet', []],
] as const

for (const [kind, folder, layouts] of KINDS) {
  const index = goldenJson(`pipeline/${folder}/index.json`)
  const cases = (index.cases as any[]).flatMap((c) =>
    (layouts.length ? layouts : [c.model as string]).map((model) => ({ ...c, model })),
  )
  describe(`batched ${kind} golden cases`, () => {
    it.each(cases)('$name on $model', async (c) => {
      const ref = goldenJson(`pipeline/${folder}/${c.json}`)
      const params = goldenParams(ref)
      const dir = join(GOLDEN, 'pipeline', c.model)
      const { batched, unetCalls } = await compare(dir, kind, [params, partner(params)])
      // One UNet call per step for both members.
      expect(unetCalls).toBe(ref.timesteps?.length ?? params.steps)
      // The golden case in its batch still matches diffusers' reference.
      const tol = 1e-3 * Math.max(1, maxAbs(ref.final_latents))
      expect(maxAbsDiff(batched[0].latents, ref.final_latents)).toBeLessThanOrEqual(tol)
    })
  })
}

describe('batched generations on the bundled model', () => {
  const base: GenerateParams = {
    prompt: 'a red circle',
    seed: 1,
    steps: 8,
    guidanceScale: 7.5,
    scheduler: 'euler_a',
  }

  it('mixes prompts, guidance scales, seeds and image counts in one batch', async () => {
    const jobs: GenerateParams[] = [
      base,
      { ...base, prompt: 'a blue square', negativePrompt: 'green', seed: 5, guidanceScale: 3 },
      { ...base, seed: 9, guidanceScale: 1 },
      { ...base, seed: 11, numImages: 2, guidanceRescale: 0.7 },
    ]
    const { unetCalls } = await compare(TINY_SHAPES, 'bundled tiny-shapes', jobs)
    expect(unetCalls).toBe(8)
    const ddim = jobs.map((j) => ({ ...j, scheduler: 'ddim', steps: 5 }))
    expect((await compare(TINY_SHAPES, 'bundled tiny-shapes', ddim)).unetCalls).toBe(5)
  })

  it('keys what must be shared, and refuses a batch that does not share it', async () => {
    const { pipe } = await pipelineFor(TINY_SHAPES)
    const key = pipe.batchKey(base)
    // Aliases and per-generation settings do not matter; size, steps and scheduler do.
    expect(pipe.batchKey({ ...base, scheduler: 'EulerAncestralDiscreteScheduler' })).toBe(key)
    expect(pipe.batchKey({ ...base, seed: 3, guidanceScale: 1, prompt: 'x', numImages: 2 })).toBe(
      key,
    )
    for (const other of [
      { steps: 9 },
      { width: 128 },
      { scheduler: 'euler' },
      { schedulerConfig: { timestep_spacing: 'leading' } },
    ])
      expect(pipe.batchKey({ ...base, ...other })).not.toBe(key)
    expect(() => pipe.generateBatch([{ params: base }, { params: { ...base, steps: 4 } }])).toThrow(
      PipelineInputError,
    )
    expect(() => pipe.batchKey({ ...base, steps: 0 })).toThrow(PipelineInputError)
  })

  it('lets one member be aborted or refused without stopping the others', async () => {
    const { pipe } = await pipelineFor(TINY_SHAPES)
    const alone = await pipe.generate({ ...base, seed: 21 })
    const stop = new AbortController()
    const steps: number[][] = [[], [], []]
    const [kept, aborted, refused] = pipe.generateBatch([
      { params: { ...base, seed: 21 }, options: { onStep: (p) => steps[0].push(p.step) } },
      {
        params: { ...base, seed: 22 },
        options: {
          signal: stop.signal,
          onStep: (p) => {
            steps[1].push(p.step)
            if (p.step === 3) stop.abort(new Error('client gone'))
          },
        },
      },
      { params: { ...base, seed: 23, guidanceScale: 1e9 } },
    ])
    await expect(refused).rejects.toThrow(PipelineInputError)
    await expect(aborted).rejects.toThrow('client gone')
    const got = await kept
    expect(steps[0]).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(steps[1]).toEqual([1, 2, 3])
    expect(diff(got, alone)).toMatchObject({ latents: 0, maxPixel: 0 })
  })
})
