/**
 * Image-to-image, inpainting (4- and 9-channel UNets) and ControlNet against diffusers'
 * reference generations (`pipeline/cases-img2img`, `cases-inpaint`, `cases-controlnet`): the pure
 * pieces (timesteps after `strength`, masks, the guidance window, the VAE posterior) one by one,
 * then every case end to end through the `StableDiffusionPipeline` the API uses.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import {
  binarizeMask,
  controlKeep,
  downsampleMask,
  imageToVaeInput,
  maskedVaeInput,
  samplePosterior,
  timestepsForStrength,
} from '../../src/pipeline/conditioning'
import { loadModel, type LoadedModel } from '../../src/pipeline/model'
import { TorchGenerator } from '../../src/pipeline/randn'
import { createScheduler } from '../../src/pipeline/schedulers'
import { float32 } from '../../src/pipeline/tensor'
import { PipelineInputError, StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { imageDiff } from '../browser/golden-compare'
import { goldenParams } from '../browser/golden-params'
import { GOLDEN, goldenJson, maxAbs, maxAbsDiff } from './golden'

const KINDS = ['img2img', 'inpaint', 'controlnet'] as const
const cases = KINDS.flatMap((kind) =>
  (goldenJson(`pipeline/cases-${kind}/index.json`).cases as any[]).map((c) => ({
    kind,
    name: c.name as string,
    ref: goldenJson(`pipeline/cases-${kind}/${c.json}`),
  })),
)

const models = new Map<string, Promise<LoadedModel>>()
function model(name: string): Promise<LoadedModel> {
  let m = models.get(name)
  if (!m) {
    m = loadModel(folderSource(join(GOLDEN, 'pipeline', name)), createNodeBackend('cpu'))
    models.set(name, m)
  }
  return m
}

/** The image tolerance of the golden README: |Δ| ≤ 1 everywhere, at most 1 % of values differ. */
function expectImageClose(got: Uint8Array, want: number[]) {
  const { worst, share } = imageDiff(got, want)
  expect(worst).toBeLessThanOrEqual(1)
  expect(share).toBeLessThanOrEqual(0.01)
}

const relTol = (ref: ArrayLike<number>, k: number) => k * Math.max(1, maxAbs(ref))

describe('the conditioners’ pure pieces match diffusers', () => {
  it.each(cases.filter((c) => c.kind !== 'controlnet'))('$name: get_timesteps', ({ ref }) => {
    const s = createScheduler(ref.scheduler.class, {}, ref.scheduler.config)
    s.setTimesteps(ref.inputs.num_inference_steps)
    expect([...s.timesteps]).toEqual(ref.timesteps_full)
    const ts = timestepsForStrength(s, ref.inputs.num_inference_steps, ref.inputs.strength)
    expect(ts).toEqual(ref.timesteps)
    expect([ts[0]]).toEqual(ref.latent_timestep)
  })

  it.each(cases.filter((c) => c.kind === 'inpaint'))('$name: mask processing', ({ ref }) => {
    const m = ref.inputs.mask_image
    const bin = binarizeMask({ width: m.width, height: m.height, data: Uint8Array.from(m.uint8) })
    expect([...bin]).toEqual(ref.mask_condition.values)
    const small = downsampleMask(bin, m.width, m.height, 8)
    const batch = ref.mask_latent.shape[0]
    expect(Array.from({ length: batch }, () => [...small]).flat()).toEqual(ref.mask_latent.values)
  })

  it.each(cases.filter((c) => c.kind === 'controlnet'))('$name: guidance window', ({ ref }) => {
    const keep = controlKeep(
      ref.timesteps.length,
      ref.inputs.control_guidance_start,
      ref.inputs.control_guidance_end,
    )
    expect(keep).toEqual(ref.controlnet_keep)
    expect(keep.map((k) => ref.inputs.controlnet_conditioning_scale * k)).toEqual(ref.cond_scales)
  })

  it.each(cases.filter((c) => c.kind !== 'controlnet'))(
    '$name: VAE encoder, posterior and initial latents',
    async ({ ref }) => {
      const m = await model(ref.model)
      const inp = ref.inputs
      const image = { width: inp.width, height: inp.height, data: Uint8Array.from(inp.image.uint8) }
      let vaeInput = imageToVaeInput(image)
      const calls: any[] = ref.vae_encoder_calls
      const mask =
        inp.mask_image &&
        binarizeMask({
          width: inp.width,
          height: inp.height,
          data: Uint8Array.from(inp.mask_image.uint8),
        })
      const gen = new TorchGenerator(inp.seed)
      const shape = [1, 4, inp.height / 8, inp.width / 8]
      const fullNoise = ref.kind === 'inpaint' && inp.strength === 1
      const nine = ref.unet_in_channels === 9
      // Draw order: posterior(image) [unless 9-channel at strength 1], noise, posterior(masked).
      let call = 0
      const encode = async (x: Float32Array) => {
        expect(maxAbsDiff(x.subarray(0, 64), calls[call].input_first64)).toBeLessThanOrEqual(1e-6)
        const out = await m.vaeEncoder!.run({ sample: float32(x, [1, 3, inp.height, inp.width]) })
        const params = out.latent_parameters.data as Float32Array
        expect(maxAbsDiff(params, calls[call].latent_parameters)).toBeLessThanOrEqual(1e-4)
        const latents = samplePosterior(params, shape, 0.18215, gen)
        const tol = relTol(calls[call].latents_scaled, 1e-4)
        expect(maxAbsDiff(latents, calls[call].latents_scaled)).toBeLessThanOrEqual(tol)
        call++
        return latents
      }
      const imageLatents = fullNoise && nine ? undefined : await encode(vaeInput)
      if (ref.image_latents) expect(imageLatents).toBeDefined()
      const noise = gen.randn(shape)
      // randn's tolerance: the reference drew with torch's AVX2 kernel (see randn.test.ts).
      expect(maxAbsDiff(noise, ref.noise)).toBeLessThanOrEqual(5e-6)
      const s = createScheduler(ref.scheduler.class, {}, ref.scheduler.config)
      s.setTimesteps(inp.num_inference_steps)
      const ts = timestepsForStrength(s, inp.num_inference_steps, inp.strength)
      const initial = fullNoise
        ? noise.map((v) => Math.fround(v * s.initNoiseSigma))
        : s.addNoise(imageLatents!, noise, ts[0])
      expect(maxAbsDiff(initial, ref.initial_latents)).toBeLessThanOrEqual(
        relTol(ref.initial_latents, 1e-4),
      )
      if (mask && nine) {
        vaeInput = maskedVaeInput(vaeInput, mask)
        const masked = await encode(vaeInput)
        const half = ref.masked_image_latents.values.slice(0, masked.length)
        expect(maxAbsDiff(masked, half)).toBeLessThanOrEqual(relTol(half, 1e-4))
      }
    },
  )
})

describe('reference generations of the conditioners', () => {
  it.each(cases)('$kind $name', async ({ ref }) => {
    const pipe = new StableDiffusionPipeline(await model(ref.model))
    const res = await pipe.generate(goldenParams(ref))
    expect(maxAbsDiff(res.latents, ref.final_latents)).toBeLessThanOrEqual(
      relTol(ref.final_latents, 1e-3),
    )
    expectImageClose(res.images[0].data, ref.image.uint8)
  })
})

describe('what a model cannot do is refused before any model runs', () => {
  let text: StableDiffusionPipeline
  let inpaint: StableDiffusionPipeline
  beforeAll(async () => {
    text = new StableDiffusionPipeline(await model('tiny-sd-optimum'))
    inpaint = new StableDiffusionPipeline(await model('tiny-sd-inpaint'))
  })
  const picture = (w: number, h: number, c = 3) => ({
    width: w,
    height: h,
    data: new Uint8Array(w * h * c),
  })

  it('an init image on a model without a VAE encoder', async () => {
    await expect(text.generate({ prompt: 'x', seed: 0, image: picture(64, 64) })).rejects.toThrow(
      /image: the model has no vae_encoder/,
    )
  })

  it('an encoder that samples inside its graph (no latent_parameters output)', async () => {
    // The golden img2img model with its encoder's output renamed (same length, so the
    // protobuf stays valid): what a legacy export that outputs `latent_sample` looks like here.
    const dir = mkdtempSync(join(tmpdir(), 'tti-legacy-encoder-'))
    try {
      cpSync(join(GOLDEN, 'pipeline', 'tiny-sd-img2img'), dir, { recursive: true })
      const file = join(dir, 'vae_encoder', 'model.onnx')
      const bytes = readFileSync(file)
      const from = Buffer.from('latent_parameters')
      const to = Buffer.from('latent_sample_out')
      for (let i = bytes.indexOf(from); i !== -1; i = bytes.indexOf(from, i + 1)) to.copy(bytes, i)
      writeFileSync(file, bytes)
      const m = await loadModel(folderSource(dir), createNodeBackend('cpu'))
      expect(m.spec.conditioners.imageToImage).toEqual({
        reason: expect.stringMatching(/samples inside the graph.*latent_parameters/),
      })
      await expect(
        new StableDiffusionPipeline(m).generate({ prompt: 'x', seed: 0, image: picture(64, 64) }),
      ).rejects.toThrow(/image: the model's vae_encoder outputs latent_sample_out: a legacy export/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a control image on a model without a ControlNet', async () => {
    await expect(
      text.generate({ prompt: 'x', seed: 0, controlImage: picture(64, 64) }),
    ).rejects.toThrow(/control image: the model has no controlnet/)
  })

  it('text alone, or an image without a mask, on a 9-channel inpainting model', async () => {
    await expect(inpaint.generate({ prompt: 'x', seed: 0 })).rejects.toThrow(
      /inpainting model: it needs an image and a mask/,
    )
    await expect(
      inpaint.generate({ prompt: 'x', seed: 0, image: picture(64, 64) }),
    ).rejects.toThrow(/inpainting model/)
  })

  it('pictures of another size, a mask without an image, a strength that runs no step', async () => {
    const p = { prompt: 'x', seed: 0 }
    await expect(
      inpaint.generate({ ...p, image: picture(64, 64), mask: picture(32, 64, 1) }),
    ).rejects.toThrow(/mask: is 32x64 but the output is 64x64/)
    await expect(inpaint.generate({ ...p, mask: picture(64, 64, 1) })).rejects.toThrow(
      /mask: inpainting needs the image/,
    )
    await expect(
      inpaint.generate({
        ...p,
        image: picture(64, 64),
        mask: picture(64, 64, 1),
        steps: 4,
        strength: 0.2,
      }),
    ).rejects.toThrow(PipelineInputError)
  })
})
