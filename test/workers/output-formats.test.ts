/**
 * Output formats and variants inside workerd, with the real codecs: what is served is decoded
 * (WebP by libwebp's decoder, JPEG by the app's own MozJPEG decoder, PNG by fast-png) and
 * compared with the stored original's pixels; the original PNG and its sha256 never change.
 */
import { env, SELF } from 'cloudflare:test'
import { decode as decodePng } from 'fast-png'
import OpenAI from 'openai'
import webpDecoder from '@jsquash/webp/codec/dec/webp_dec.js'
import webpDecoderWasm from '@jsquash/webp/codec/dec/webp_dec.wasm'
import { initEmscriptenModule } from '@jsquash/webp/utils.js'
import { beforeAll, describe, expect, it } from 'vitest'
import { imageObjectKey } from '../../src/cache/image-store'
import { imagePath } from '../../src/images/formats'
import { decodePicture } from '../../src/images/pictures'
import { encodeVariant } from '../../src/images/variants'
import { sha256Hex } from '../../src/util'
import { call, createKey, eventually, expectProblem, postImages } from './helpers'

let key: string

beforeAll(async () => {
  key = (await createKey({ scopes: ['generate', 'embed'] })).key
})

/** A generation of the bundled model, as JSON; each test uses its own seed. */
async function generate(seed: number, extra: Record<string, unknown> = {}) {
  const res = await postImages(
    key,
    { prompt: 'a red circle', seed, steps: 2, ...extra },
    { Accept: 'application/json' },
  )
  expect(res.status).toBe(200)
  return res.json() as Promise<{
    images: { url: string; png_url?: string; sha256: string; width: number; height: number }[]
  }>
}

async function bytesOf(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer())
}

/** RGB pixels of a PNG, WebP or JPEG, told apart by magic bytes. */
async function pixels(
  bytes: Uint8Array,
): Promise<{ width: number; height: number; rgb: Uint8Array }> {
  const ascii = (from: number, to: number) => String.fromCharCode(...bytes.subarray(from, to))
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') {
    const codec = await initEmscriptenModule(webpDecoder, webpDecoderWasm)
    const image = codec.decode(bytes)
    if (!image) throw new Error('libwebp could not decode the answer')
    return { width: image.width, height: image.height, rgb: rgbOf(image.data) }
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return decodePicture('image', bytes)
  const png = decodePng(bytes)
  expect(png.channels).toBe(3)
  return { width: png.width, height: png.height, rgb: new Uint8Array(png.data) }
}

function rgbOf(rgba: Uint8ClampedArray): Uint8Array {
  const rgb = new Uint8Array((rgba.length / 4) * 3)
  for (let i = 0; i < rgba.length / 4; i++) rgb.set(rgba.subarray(4 * i, 4 * i + 3), 3 * i)
  return rgb
}

/** Mean and largest absolute difference of two equally sized RGB images. */
function difference(a: Uint8Array, b: Uint8Array): { mean: number; worst: number } {
  expect(a.length).toBe(b.length)
  let sum = 0
  let worst = 0
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i])
    sum += d
    worst = Math.max(worst, d)
  }
  return { mean: sum / a.length, worst }
}

/** Box-averages RGB down by an integer factor: a resize reference independent of the codec. */
function boxDown(rgb: Uint8Array, width: number, factor: number): Uint8Array {
  const height = rgb.length / 3 / width
  const w = width / factor
  const h = height / factor
  const out = new Uint8Array(w * h * 3)
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) {
        let s = 0
        for (let dy = 0; dy < factor; dy++)
          for (let dx = 0; dx < factor; dx++)
            s += rgb[((y * factor + dy) * width + x * factor + dx) * 3 + c]
        out[(y * w + x) * 3 + c] = Math.round(s / factor / factor)
      }
  return out
}

const path = (url: string) => new URL(url).pathname + new URL(url).search

describe('POST /v1/images output_format', () => {
  it('answers WebP bytes of the same image, under the same cache key and sha256', async () => {
    const body = { prompt: 'a red circle', seed: 9101, steps: 2 }
    const png = await postImages(key, body)
    expect(png.headers.get('Content-Type')).toBe('image/png')
    const original = await bytesOf(png)
    const sha256 = await sha256Hex(original)

    const res = await postImages(key, { ...body, output_format: 'webp' })
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toBe('image/webp')
    // The generation is the PNG's: a hit under the same key, the same image.
    expect(res.headers.get('X-Cache')).toBe('HIT')
    expect(res.headers.get('X-Request-Key')).toBe(png.headers.get('X-Request-Key'))
    expect(res.headers.get('Content-Location')).toBe(`/v1/images/${sha256}.webp`)
    expect(res.headers.get('ETag')).toBe(`"${sha256}-webp-q80-c1"`)
    const webp = await bytesOf(res)
    const got = await pixels(webp)
    const want = await pixels(original)
    expect([got.width, got.height]).toEqual([want.width, want.height])
    // Lossy at quality 80 on a 64×64 render: measured mean 2.6, worst 39 levels.
    const { mean, worst } = difference(got.rgb, want.rgb)
    expect(mean).toBeLessThan(4)
    expect(worst).toBeLessThan(96)

    // The stored original is untouched: the same bytes at the same address.
    const stored = await env.IMAGES.get(imageObjectKey(sha256))
    expect(new Uint8Array(await stored!.arrayBuffer())).toEqual(original)
    expect(await bytesOf(await call(`/v1/images/${sha256}.png`))).toEqual(original)
  })

  it('gives variant URLs in JSON, with the PNG URL and sha256 beside them', async () => {
    const png = await generate(9102)
    const jpeg = await generate(9102, { output_format: 'jpeg', output_compression: 50 })
    const [p] = png.images
    const [j] = jpeg.images
    expect(j.sha256).toBe(p.sha256)
    expect(j.png_url).toBe(p.url)
    expect(p.png_url).toBeUndefined()
    expect(path(j.url)).toBe(`/v1/images/${p.sha256}.jpg?q=50`)

    const res = await call(path(j.url))
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toBe('image/jpeg')
    const bytes = await bytesOf(res)
    expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8])
    const original = await bytesOf(await call(path(p.url)))
    expect(await sha256Hex(original)).toBe(p.sha256)
    // Quality 50 (4:2:0 chroma): measured mean 3.8, worst 50 levels on this render.
    const { mean, worst } = difference((await pixels(bytes)).rgb, (await pixels(original)).rgb)
    expect(mean).toBeLessThan(6)
    expect(worst).toBeLessThan(128)
    // A lower quality is a smaller file than the default's.
    const q85 = await bytesOf(await call(`/v1/images/${p.sha256}.jpg`))
    expect(bytes.length).toBeLessThan(q85.length)
  })

  it('negotiates Accept against the output format', async () => {
    const body = { prompt: 'a red circle', seed: 9103, steps: 2, output_format: 'jpeg' }
    const ok = await postImages(key, body, { Accept: 'image/jpeg' })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('Content-Type')).toBe('image/jpeg')
    await expectProblem(await postImages(key, body, { Accept: 'image/png' }), 406, 'not-acceptable')
  })

  it('refuses unknown formats, compression outside 0–100 and compression of a PNG', async () => {
    const fields = async (extra: Record<string, unknown>) => {
      const res = await postImages(key, { prompt: 'a', ...extra })
      const body = await expectProblem(res, 422, 'validation-error')
      return (body.errors as { field: string }[]).map((e) => e.field)
    }
    expect(await fields({ output_format: 'gif' })).toEqual(['output_format'])
    expect(await fields({ output_format: 'webp', output_compression: 101 })).toEqual([
      'output_compression',
    ])
    expect(await fields({ output_format: 'jpeg', output_compression: 2.5 })).toEqual([
      'output_compression',
    ])
    expect(await fields({ output_compression: 50 })).toEqual(['output_compression'])
  })
})

describe('GET /v1/images/{sha256}.{format} variants', () => {
  it('serves widths for srcset, in every format, smaller and close to the original', async () => {
    const [img] = (await generate(9104)).images
    const original = await pixels(await bytesOf(await call(path(img.url))))
    for (const [ext, magic] of [
      ['webp', 'RIFF'],
      ['jpg', '\xff\xd8'],
      ['png', '\x89PNG'],
    ] as const) {
      const res = await call(`/v1/images/${img.sha256}.${ext}?w=32`)
      expect(res.status, ext).toBe(200)
      const bytes = await bytesOf(res)
      expect(String.fromCharCode(...bytes.subarray(0, magic.length))).toBe(magic)
      const got = await pixels(bytes)
      expect([got.width, got.height]).toEqual([32, 32])
      // Lanczos-3 against a 2×2 box average: measured mean 0.9 (png) to 3.4 (webp).
      const { mean } = difference(got.rgb, boxDown(original.rgb, 64, 2))
      expect(mean, ext).toBeLessThan(8)
    }
    // `.jpeg` is `.jpg`'s alias: the same bytes.
    expect(await bytesOf(await call(`/v1/images/${img.sha256}.jpeg?w=16`))).toEqual(
      await bytesOf(await call(`/v1/images/${img.sha256}.jpg?w=16`)),
    )
  })

  it('encodes a variant once: later requests come from the Cache API, not the original', async () => {
    const [img] = (await generate(9105)).images
    const url = `/v1/images/${img.sha256}.webp?w=48`
    const first = await call(url)
    expect(first.status).toBe(200)
    const bytes = await bytesOf(first)
    const cacheUrl = `https://tti.test${url}`
    await eventually(async () => expect(await caches.default.match(cacheUrl)).toBeDefined())

    // With the original gone from R2, only the cache can answer the variant.
    const stored = await env.IMAGES.get(imageObjectKey(img.sha256))
    const png = new Uint8Array(await stored!.arrayBuffer())
    await env.IMAGES.delete(imageObjectKey(img.sha256))
    try {
      const again = await call(url)
      expect(again.status).toBe(200)
      expect(await bytesOf(again)).toEqual(bytes)
      expect(again.headers.get('ETag')).toBe(first.headers.get('ETag'))
      // A variant that was never encoded needs the original: none.
      await expectProblem(await call(`/v1/images/${img.sha256}.webp?w=32`), 404, 'not-found')
    } finally {
      await env.IMAGES.put(imageObjectKey(img.sha256), png)
    }
  })

  it('has a strong ETag per variant, answered with 304', async () => {
    const [img] = (await generate(9106)).images
    const res = await call(`/v1/images/${img.sha256}.jpg?w=32&q=40`)
    const etag = res.headers.get('ETag')!
    expect(etag).toBe(`"${img.sha256}-jpg-w32-q40-c1"`)
    expect(res.headers.get('Cache-Control')).toContain('immutable')
    const again = await call(`/v1/images/${img.sha256}.jpg?q=40&w=32`, {
      headers: { 'If-None-Match': etag },
    })
    expect(again.status).toBe(304)
    // The original's ETag is not the variant's.
    const other = await call(`/v1/images/${img.sha256}.jpg?w=32&q=40`, {
      headers: { 'If-None-Match': `"${img.sha256}"` },
    })
    expect(other.status).toBe(200)
  })

  it('encodes deterministically: a variant ETag names exactly one byte string', async () => {
    const [img] = (await generate(9112)).images
    const png = await bytesOf(await call(path(img.url)))
    for (const variant of [
      { format: 'webp', quality: 80 },
      { format: 'jpeg', quality: 85, width: 32 },
      { format: 'png', width: 48 },
    ] as const) {
      const a = await encodeVariant(png, variant)
      const b = await encodeVariant(png, variant)
      expect(b.bytes).toEqual(a.bytes)
      const served = await call(imagePath(img.sha256, variant))
      expect(await bytesOf(served), JSON.stringify(variant)).toEqual(a.bytes)
    }
  })

  it('refuses widths off the ladder or above the image, bad qualities and unknown types', async () => {
    const [img] = (await generate(9107)).images
    const fieldOf = async (query: string, ext = 'webp') => {
      const res = await call(`/v1/images/${img.sha256}.${ext}${query}`)
      const body = await expectProblem(res, 422, 'validation-error')
      return (body.errors as { field: string }[]).map((e) => e.field)
    }
    expect(await fieldOf('?w=33')).toEqual(['w'])
    expect(await fieldOf('?w=')).toEqual(['w'])
    expect(await fieldOf('?w=128')).toEqual(['w']) // above the 64-pixel original
    expect(await fieldOf('?q=101')).toEqual(['q'])
    expect(await fieldOf('?q=-1')).toEqual(['q'])
    expect(await fieldOf('?q=50', 'png')).toEqual(['q'])
    expect((await call(`/v1/images/${img.sha256}.gif`)).status).toBe(404)
  })
})

describe('OpenAI images.generate output_format (openai npm client)', () => {
  const openai = () =>
    new OpenAI({
      apiKey: key,
      baseURL: 'https://tti.test/v1',
      fetch: ((url: string | URL | Request, init?: RequestInit) =>
        SELF.fetch(url, init)) as typeof fetch,
      maxRetries: 0,
    })

  it('answers b64_json WebP and URLs of the WebP variant', async () => {
    const common = {
      prompt: 'a red circle',
      size: '64x64',
      output_format: 'webp',
      output_compression: 70,
      ...({ seed: 9108, steps: 2 } as object),
    } as const
    const b64 = await openai().images.generate({ ...common, response_format: 'b64_json' })
    expect(b64.output_format).toBe('webp')
    const bytes = Uint8Array.from(atob(b64.data![0].b64_json!), (ch) => ch.charCodeAt(0))
    const got = await pixels(bytes)
    expect([got.width, got.height]).toEqual([64, 64])

    const byUrl = await openai().images.generate({ ...common, response_format: 'url' })
    const url = byUrl.data![0].url!
    expect(path(url)).toMatch(/^\/v1\/images\/[0-9a-f]{64}\.webp\?q=70$/)
    expect(await bytesOf(await call(path(url)))).toEqual(bytes)
  })
})

describe('embeds in other formats and widths', () => {
  async function mint(body: Record<string, unknown>) {
    const res = await call('/v1/embeds', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
      body: JSON.stringify({ prompt: 'a red circle', steps: 2, ...body }),
    })
    expect(res.status).toBe(200)
    return res.json() as Promise<{ url: string; html: string; picture: string }>
  }

  it('mints a WebP URL and a <picture> whose every srcset entry has its stated width', async () => {
    const minted = await mint({ seed: 9109, output_format: 'webp' })
    expect(path(minted.url)).toMatch(/^\/v1\/embeds\/[\w-]+\.[\w-]+\.webp$/)
    const res = await call(path(minted.url))
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toBe('image/webp')
    expect(res.headers.get('X-Cache')).toBe('MISS')
    const sha256 = res.headers.get('Content-Location')!.match(/[0-9a-f]{64}/)![0]
    expect(res.headers.get('ETag')).toBe(`"${sha256}-webp-q80-c1"`)
    expect((await pixels(await bytesOf(res))).width).toBe(64)

    // <source> WebP and <img> PNG, each 16w, 32w, 48w and the full 64w.
    const sets = [...minted.picture.matchAll(/srcset="([^"]+)"/g)].map((m) => m[1])
    expect(minted.picture).toMatch(
      /^<picture><source type="image\/webp" srcset=.*<img src=".*\.png" .*width="64" height="64" alt="a red circle".*<\/picture>$/,
    )
    expect(sets).toHaveLength(2)
    for (const [set, ext] of [
      [sets[0], 'webp'],
      [sets[1], 'png'],
    ]) {
      const entries = set.split(', ').map((e) => e.split(' '))
      expect(entries.map(([, w]) => w)).toEqual(['16w', '32w', '48w', '64w'])
      for (const [url, w] of entries) {
        expect(path(url)).toContain(`.${ext}`)
        const got = await pixels(await bytesOf(await call(path(url))))
        expect(got.width, url).toBe(Number.parseInt(w))
      }
    }
    // The PNG embed still names the same image, byte for byte the original.
    const png = await call(path(minted.url).replace(/\.webp$/, '.png'))
    expect(png.headers.get('X-Cache')).toBe('HIT')
    expect(await sha256Hex(await bytesOf(png))).toBe(sha256)
  })

  it('refuses a width above the image before the first view generates it', async () => {
    const minted = await mint({ seed: 9110, output_format: 'jpeg', output_compression: 60 })
    expect(path(minted.url)).toMatch(/\.jpg\?q=60$/)
    const res = await call(path(minted.url).replace('?q=60', '?w=128'))
    const body = await expectProblem(res, 422, 'validation-error')
    expect((body.errors as { field: string }[]).map((e) => e.field)).toEqual(['w'])
    // Nothing was generated for it: the first real view is still a miss.
    const first = await call(path(minted.url))
    expect(first.headers.get('X-Cache')).toBe('MISS')
    expect(first.headers.get('Content-Type')).toBe('image/jpeg')
  })

  it('keeps the content address out of restricted views in every format', async () => {
    const minted = await mint({ seed: 9111, origins: ['https://blog.example'] })
    const res = await call(path(minted.url).replace(/\.png$/, '.webp?w=32'), {
      headers: { Origin: 'https://blog.example' },
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toBe('image/webp')
    expect(res.headers.get('ETag')).toBeNull()
    expect(res.headers.get('Content-Location')).toBeNull()
  })
})
