/**
 * The full pipeline against diffusers' reference generations on both tiny ONNX layouts
 * (optimum: int64 ids + float32 scalar timestep; legacy: int32 ids + int64 [batch] timestep),
 * through the same `StableDiffusionPipeline` the API uses.
 */
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { loadModel, type LoadedModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { folderSource } from '../../src/node/folder-source'
import { GOLDEN, goldenJson, maxAbs, maxAbsDiff } from './golden'
import { goldenParams } from '../browser/golden-params'

const index = goldenJson('pipeline/cases/index.json')
const LAYOUTS = ['tiny-sd-optimum', 'tiny-sd-legacy'] as const

describe.each(LAYOUTS)('reference generations on %s', (layout) => {
  let model: LoadedModel
  let pipe: StableDiffusionPipeline
  beforeAll(async () => {
    model = await loadModel(
      folderSource(join(GOLDEN, 'pipeline', layout)),
      createNodeBackend('cpu'),
    )
    pipe = new StableDiffusionPipeline(model)
  })

  it('derives the I/O contract from the files and sessions', () => {
    const s = model.spec
    expect(s.tokenWindow).toBe(77)
    expect(s.hiddenSize).toBe(32)
    expect(s.vaeScaleFactor).toBe(8)
    expect(s.scalingFactor).toBeCloseTo(0.18215, 6)
    expect(s.sampleSize).toBe(64)
    expect(s.inputIdsType).toBe(layout === 'tiny-sd-optimum' ? 'int64' : 'int32')
    expect(s.timestep).toEqual(
      layout === 'tiny-sd-optimum'
        ? { type: 'float32', layout: 'scalar' }
        : { type: 'int64', layout: 'batch' },
    )
    expect(s.digest).toMatch(/^[0-9a-f]{64}$/)
  })

  it.each(index.cases as any[])('$name', async (c) => {
    const ref = goldenJson(`pipeline/cases/${c.json}`)
    const inp = ref.inputs
    // Text encoder parity on the reference ids.
    const emb = await pipe.encodePrompt(inp.prompt)
    expect(maxAbsDiff(emb, ref.text_encoder.prompt_embeds)).toBeLessThanOrEqual(1e-5)

    const res = await pipe.generate(goldenParams(ref))
    const tol = 1e-3 * Math.max(1, maxAbs(ref.final_latents))
    expect(maxAbsDiff(res.latents, ref.final_latents)).toBeLessThanOrEqual(tol)
    const want: number[] = ref.image.uint8
    const got = res.images[0].data
    expect(got.length).toBe(want.length)
    let differ = 0
    for (let k = 0; k < want.length; k++) {
      const d = Math.abs(got[k] - want[k])
      expect(d).toBeLessThanOrEqual(1)
      if (d) differ++
    }
    expect(differ / want.length).toBeLessThanOrEqual(0.01)
  })
})
