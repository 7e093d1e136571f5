/**
 * The drop-in clients' picture routes inside workerd, driven by the official packages:
 * `openai`'s `images.edit` (multipart image + a mask whose transparency marks the edit) and
 * `@huggingface/inference`'s `imageToImage`, both checked against diffusers' reference pixels.
 */
import { SELF } from 'cloudflare:test'
import { imageToImage } from '@huggingface/inference'
import { encode } from 'fast-png'
import OpenAI, { toFile } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodePicture } from '../../src/images/pictures'
import { imageDiff } from '../browser/golden-compare'
import { goldenBytes, goldenJson, installGoldenModels } from './golden-models'
import { createKey } from './helpers'

let key: string
let restore: () => void
const fetchSelf = ((url: string | URL | Request, init?: RequestInit) =>
  SELF.fetch(url, init)) as typeof fetch

beforeAll(async () => {
  restore = await installGoldenModels()
  key = (await createKey({ scopes: ['generate'] })).key
})
afterAll(() => restore?.())

async function expectPixels(png: Uint8Array, ref: any) {
  const { rgb } = await decodePicture('image', png)
  const want: number[] = ref.image.uint8
  const { worst, share } = imageDiff(rgb, want)
  expect(worst).toBeLessThanOrEqual(1)
  expect(share).toBeLessThanOrEqual(0.01)
}

describe('OpenAI images.edit (openai npm client)', () => {
  const openai = () =>
    new OpenAI({ apiKey: key, baseURL: 'https://tti.test/v1', fetch: fetchSelf, maxRetries: 0 })

  it('a mask whose transparent pixels mark the edit inpaints as diffusers does', async () => {
    const ref = await goldenJson(
      'pipeline/cases-inpaint/unet9_pndm_20_s1.0_cfg7.5_rect_seed0_64x64.json',
    )
    // OpenAI's mask: RGBA, alpha 0 where to edit (the golden mask's white).
    const m = await decodePicture('mask', await goldenBytes('pipeline/inputs/mask_rect_64x64.png'))
    const rgba = new Uint8Array(64 * 64 * 4)
    for (let p = 0; p < 64 * 64; p++) rgba[p * 4 + 3] = m.rgb[p * 3] >= 128 ? 0 : 255
    const mask = encode({ width: 64, height: 64, data: rgba, channels: 4 })
    const i = ref.inputs
    const res = await openai().images.edit({
      model: 'tiny-sd-inpaint',
      image: await toFile(await goldenBytes('pipeline/inputs/gradient_disc_64x64.png'), 'in.png', {
        type: 'image/png',
      }),
      mask: await toFile(mask, 'mask.png', { type: 'image/png' }),
      prompt: i.prompt,
      size: '64x64',
      response_format: 'b64_json',
      // Native fields pass through as extensions, as on /images/generations.
      ...({
        seed: i.seed,
        steps: i.num_inference_steps,
        guidance_scale: i.guidance_scale,
      } as object),
    })
    const b64 = res.data![0].b64_json!
    await expectPixels(
      Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)),
      ref,
    )
  })

  it('errors come back as the SDK error classes, naming OpenAI fields', async () => {
    const err = await openai()
      .images.edit({
        model: 'tiny-sd-inpaint',
        image: await toFile(
          await goldenBytes('pipeline/inputs/gradient_disc_64x64.png'),
          'in.png',
          {
            type: 'image/png',
          },
        ),
        prompt: 'x',
        size: '32x32',
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.UnprocessableEntityError)
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ param: 'size' })
  })
})

describe('Hugging Face imageToImage (@huggingface/inference)', () => {
  it('with endpointUrl on /v1/hf/models/<id> reproduces diffusers', async () => {
    const ref = await goldenJson('pipeline/cases-img2img/pndm_20_s0.75_cfg7.5_seed0_64x64.json')
    const i = ref.inputs
    const blob = await imageToImage(
      {
        endpointUrl: 'https://tti.test/v1/hf/models/tiny-sd-img2img',
        accessToken: key,
        inputs: new Blob([await goldenBytes('pipeline/inputs/gradient_disc_64x64.png')], {
          type: 'image/png',
        }),
        parameters: {
          prompt: i.prompt,
          strength: i.strength,
          num_inference_steps: i.num_inference_steps,
          guidance_scale: i.guidance_scale,
          seed: i.seed,
        } as never,
      },
      { fetch: fetchSelf },
    )
    await expectPixels(new Uint8Array(await blob.arrayBuffer()), ref)
  })
})
