/** Bad inputs give clear errors before any model runs, never NaN images. */
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { ModelLoadError, mapSource } from '../../src/pipeline/model-source'
import { readPngText, encodePng, formatParameters } from '../../src/pipeline/png'
import { SchedulerError } from '../../src/pipeline/schedulers'
import { PipelineInputError, StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { createPipelineEngine } from '../../src/engine/local-engine'
import { GOLDEN } from './golden'

const DIR = join(GOLDEN, 'pipeline', 'tiny-sd-optimum')

describe('pipeline input checks', () => {
  let pipe: StableDiffusionPipeline
  beforeAll(async () => {
    pipe = new StableDiffusionPipeline(await loadModel(folderSource(DIR), createNodeBackend('cpu')))
  })

  it('rejects wrong-size latents', async () => {
    await expect(
      pipe.generate({ prompt: 'x', seed: 0, steps: 1, latents: new Float32Array(10) }),
    ).rejects.toThrow(/latents must have 256 values/)
  })
  it('rejects steps of 0', async () => {
    await expect(pipe.generate({ prompt: 'x', seed: 0, steps: 0 })).rejects.toThrow(
      PipelineInputError,
    )
  })
  it('rejects a scheduler config with an unknown prediction_type', async () => {
    await expect(
      pipe.generate({
        prompt: 'x',
        seed: 0,
        steps: 2,
        schedulerConfig: { prediction_type: 'noise' },
      }),
    ).rejects.toThrow(/unknown prediction_type "noise"/)
  })
  it('rejects an unknown scheduler name', async () => {
    await expect(
      pipe.generate({ prompt: 'x', seed: 0, steps: 2, scheduler: 'nope' }),
    ).rejects.toThrow(SchedulerError)
  })
  it('rejects a size that is not a multiple of the model factor', async () => {
    await expect(pipe.generate({ prompt: 'x', seed: 0, steps: 2, width: 40 })).rejects.toThrow(
      /width must be a multiple of 16/,
    )
  })

  it('gives image i the seed + i of a single-image run', async () => {
    const base = { prompt: 'a cat', steps: 3, guidanceScale: 7.5, scheduler: 'euler_a' }
    const two = await pipe.generate({ ...base, seed: 5, numImages: 2 })
    const one = await pipe.generate({ ...base, seed: 6 })
    expect(two.images).toHaveLength(2)
    expect(Buffer.from(two.images[1].data).equals(Buffer.from(one.images[0].data))).toBe(true)
  })

  it('applies guidance_rescale and stays finite', async () => {
    const base = { prompt: 'a cat', seed: 1, steps: 4, guidanceScale: 7.5 }
    const plain = await pipe.generate(base)
    const rescaled = await pipe.generate({ ...base, guidanceRescale: 0.7 })
    expect(rescaled.latents.every(Number.isFinite)).toBe(true)
    expect(Buffer.from(rescaled.latents.buffer).equals(Buffer.from(plain.latents.buffer))).toBe(
      false,
    )
  })

  it('reports progress per step and stops on abort', async () => {
    const seen: number[] = []
    const ac = new AbortController()
    await expect(
      pipe.generate(
        { prompt: 'x', seed: 0, steps: 10 },
        {
          signal: ac.signal,
          onStep: ({ step }) => {
            seen.push(step)
            if (step === 3) ac.abort()
          },
        },
      ),
    ).rejects.toThrow()
    expect(seen).toEqual([1, 2, 3])
  })

  it('writes the generation parameters into the PNG', async () => {
    const { images } = await pipe.generate({ prompt: 'a cat', seed: 3, steps: 1 })
    const text = formatParameters({
      prompt: 'a cat ☕',
      negativePrompt: 'blurry',
      steps: 1,
      scheduler: 'PNDMScheduler',
      guidanceScale: 7.5,
      seed: 3,
      width: 64,
      height: 64,
      model: 'tiny',
      modelDigest: pipe.spec.digest,
    })
    const png = encodePng(images[0], { parameters: text })
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    expect(readPngText(png).parameters).toBe(text)
    expect(text).toContain(
      'Negative prompt: blurry\nSteps: 1, Sampler: PNDMScheduler, CFG scale: 7.5, Seed: 3, Size: 64x64',
    )
  })
})

describe('model loading errors', () => {
  it('names a missing tokenizer file', async () => {
    const files: Record<string, Uint8Array> = {}
    const src = folderSource(DIR)
    for (const p of ['model_index.json', 'scheduler/scheduler_config.json'])
      files[p] = await src.readBytes(p)
    await expect(loadModel(mapSource('broken', files), createNodeBackend('cpu'))).rejects.toThrow(
      new ModelLoadError('broken: missing model file tokenizer/vocab.json'),
    )
  })
  it('names a missing folder', async () => {
    await expect(
      loadModel(folderSource('/nonexistent/model'), createNodeBackend('cpu')),
    ).rejects.toThrow(/missing model file model_index.json/)
  })
})

describe('what a PNG records of its prompt', () => {
  it('the text the model saw: a tail cut by truncation never reaches the image, or a cache hit', async () => {
    const pipe = new StableDiffusionPipeline(
      await loadModel(
        folderSource(join(GOLDEN, 'pipeline', 'tiny-sd-optimum')),
        createNodeBackend('cpu'),
      ),
    )
    const engine = createPipelineEngine([pipe])
    const window = 'a red circle on a white background '.repeat(12)
    const [img] = await engine.generate({
      model: pipe.spec.id,
      prompt: `${window} card 4111 1111 1111 1111`,
      negativePrompt: 'Blurry',
      seed: 4,
      steps: 1,
      guidanceScale: 7.5,
      width: 64,
      height: 64,
      scheduler: 'euler',
      n: 1,
      truncate: true,
      options: {},
    })
    const text = readPngText(img.bytes).parameters
    expect(text).not.toContain('4111')
    expect(text.startsWith(pipe.textSeen(window))).toBe(true)
    expect(text).toContain('Negative prompt: blurry\n')
  })
})
