/**
 * The reference generations inside workerd: text-to-image, image-to-image, inpainting and
 * ControlNet on the tiny golden models, through onnxruntime-web's WebAssembly backend as the
 * edge runs it. The golden files come from the GOLDEN service binding (vitest.config.mts).
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { createWasmBackend } from '../../src/gpu/ort-wasm'
import { loadModel, type LoadedModel } from '../../src/pipeline/model'
import { fetchSource } from '../../src/pipeline/model-source'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { imageDiff, maxAbs, maxAbsDiff } from '../browser/golden-compare'
import { goldenParams } from '../browser/golden-params'
import { goldenJson } from './golden-models'

const golden = (env as unknown as { GOLDEN: Fetcher }).GOLDEN
const json = goldenJson

const FOLDERS = ['cases', 'cases-img2img', 'cases-inpaint', 'cases-controlnet']
const cases = (
  await Promise.all(
    FOLDERS.map(async (folder) =>
      ((await json(`pipeline/${folder}/index.json`)).cases as any[]).map((c) => ({
        folder,
        name: c.name as string,
        path: `pipeline/${folder}/${c.json}`,
      })),
    ),
  )
).flat()

const backend = createWasmBackend()
const models = new Map<string, Promise<LoadedModel>>()
function model(name: string): Promise<LoadedModel> {
  let m = models.get(name)
  if (!m) {
    const source = fetchSource(`http://golden/pipeline/${name}/`, (url) => golden.fetch(url))
    m = loadModel(source, backend)
    models.set(name, m)
  }
  return m
}

describe('reference generations in workerd (onnxruntime-web, WebAssembly)', () => {
  it.each(cases)('$folder $name', async ({ path }) => {
    const ref = await json(path)
    const pipe = new StableDiffusionPipeline(await model(ref.model ?? 'tiny-sd-optimum'))
    const res = await pipe.generate(goldenParams(ref))
    const want: number[] = ref.final_latents
    expect(res.latents.length).toBe(want.length)
    expect(maxAbsDiff(res.latents, want)).toBeLessThanOrEqual(1e-3 * Math.max(1, maxAbs(want)))
    const { worst, share } = imageDiff(res.images[0].data, ref.image.uint8)
    expect(worst).toBeLessThanOrEqual(1)
    expect(share).toBeLessThanOrEqual(0.01)
  })
})
