/**
 * The golden input pictures (../shared/golden/pipeline/inputs, written by Pillow) decode to exactly
 * the uint8 arrays the image-to-image, inpainting and ControlNet cases were generated from: RGB
 * pictures as `convert('RGB')`, masks (mode L) through `luminance` as `convert('L')`. Also the
 * Node path of the JPEG decoder (the wasm read from the package, not imported as a module).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { decodePicture, luminance, readPicture } from '../../src/images/pictures'
import { sha256Hex } from '../../src/util'
import { GOLDEN, goldenJson } from './golden'

interface GoldenPicture {
  png: string
  mode: 'RGB' | 'L'
  height: number
  width: number
  sha256: string
  uint8: number[]
}

const inputs = goldenJson<{
  pictures: {
    png: string
    mode: 'RGB' | 'L'
    width: number
    height: number
    sha256_of_uint8: string
  }[]
}>('pipeline/inputs/index.json').pictures

/** Every picture a conditioned case fed its pipeline, by case file. */
function casePictures(): { name: string; picture: GoldenPicture }[] {
  const out: { name: string; picture: GoldenPicture }[] = []
  for (const kind of ['cases-img2img', 'cases-inpaint', 'cases-controlnet']) {
    for (const file of readdirSync(join(GOLDEN, 'pipeline', kind))) {
      if (!file.endsWith('.json') || file === 'index.json') continue
      const { inputs: given } = goldenJson<{ inputs: Record<string, GoldenPicture> }>(
        `pipeline/${kind}/${file}`,
      )
      for (const field of ['image', 'mask_image']) {
        const picture = given[field]
        if (picture) out.push({ name: `${kind}/${file} ${field}`, picture })
      }
    }
  }
  return out
}

async function pixelsOf(png: string, mode: 'RGB' | 'L'): Promise<Uint8Array> {
  const bytes = new Uint8Array(readFileSync(join(GOLDEN, 'pipeline', 'inputs', png)))
  const picture = await decodePicture(mode === 'L' ? 'mask' : 'image', bytes)
  expect(picture.alpha).toBeUndefined()
  return mode === 'L' ? luminance(picture) : picture.rgb
}

describe('golden input pictures', () => {
  it('decode to the sha256 that inputs/index.json lists', async () => {
    expect(inputs.length).toBe(10)
    for (const p of inputs) {
      const pixels = await pixelsOf(p.png, p.mode)
      expect(pixels.length, p.png).toBe(p.width * p.height * (p.mode === 'L' ? 1 : 3))
      expect(await sha256Hex(pixels), p.png).toBe(p.sha256_of_uint8)
    }
  })

  it("decode to exactly every case's uint8 image and mask", async () => {
    const cases = casePictures()
    expect(cases.length).toBe(48) // 12 img2img + 24 inpaint (image and mask) + 12 controlnet
    for (const { name, picture } of cases) {
      const pixels = await pixelsOf(picture.png.replace('../inputs/', ''), picture.mode)
      expect(Array.from(pixels), name).toEqual(picture.uint8)
      expect(await sha256Hex(pixels), name).toBe(picture.sha256)
    }
  })
})

describe('JPEG in Node', () => {
  // Pillow 9.4: a 24×16 ramp with an orange disc, .convert('L').save(f, 'JPEG', quality=90); the
  // sha256 is of np.array(Image.open(f).convert('L')). Same fixture as test/workers/pictures.test.ts.
  const GRAY_JPEG =
    '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/wAALCAAQABgBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APkHwZ8GZ9c1K2sbaFBNM2AZDtVQBkkn0ABPrxxmvoOy/Zh0Kz05U/tG5e/H/Lfy1EXX/nn16cfe68+1VrD4SvY3TQSRqWQ4yvIPuK73wr8PJdNu4bmCPZKnQ7fUYP6E16XZeE7+8ZcIEB79a6/Rvhk0jBmiLMepIr//2Q=='
  const GRAY_L = '4883ef76eb4b192f8dbe1acd561d6d990c353c2edefa038e09d7ad5538e6e260'

  it("decodes Pillow's pixels, and an upload is stored through the deps it is given", async () => {
    const stored = new Map<string, unknown>()
    const images = {
      get: async () => null,
      head: async (key: string) => (stored.has(key) ? ({} as R2Object) : null),
      put: async (key: string, value: unknown) => {
        stored.set(key, value)
        return {} as R2Object
      },
    } as unknown as Pick<R2Bucket, 'get' | 'put' | 'head'>
    const picture = await readPicture('mask', GRAY_JPEG, { images })
    expect([picture.width, picture.height]).toEqual([24, 16])
    expect(await sha256Hex(luminance(picture))).toBe(GRAY_L)
    expect([...stored.keys()]).toEqual([`inputs/${picture.sha256}`])
  })
})
