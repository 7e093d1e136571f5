/**
 * Input pictures inside workerd, against the real local R2: every accepted form, every PNG colour
 * type and JPEG coding the conditioners take, and the refusals (413/422 naming the field) that
 * store nothing. PNG fixtures are assembled here (fflate for zlib, the repo's `encodePng` for
 * RGB, fast-png's encoder for Adam7); the JPEG fixtures were written by Pillow 9.4, and their
 * expected pixels are the sha256 of Pillow's `convert('RGB')` / `convert('L')` of the same file.
 */
import { env } from 'cloudflare:test'
import { encode as encodeWithFastPng } from 'fast-png'
import { zlibSync } from 'fflate'
import { describe, expect, it } from 'vitest'
import { imageObjectKey } from '../../src/cache/image-store'
import {
  decodePicture,
  inputObjectKey,
  luminance,
  PICTURE_LIMITS,
  readPicture,
  type PictureDeps,
  type PictureField,
} from '../../src/images/pictures'
import { encodePng } from '../../src/pipeline/png'
import { ProblemError, type ProblemSlug } from '../../src/problem'
import { sha256Hex } from '../../src/util'
import { expectProblem } from './helpers'

// --- PNG assembly ----------------------------------------------------------------------------

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, data.length)
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i)
  out.set(data, 8)
  let crc = 0xffffffff
  for (const b of out.subarray(4, 8 + data.length)) crc = CRC_TABLE[(crc ^ b) & 0xff] ^ (crc >>> 8)
  view.setUint32(8 + data.length, (crc ^ 0xffffffff) >>> 0)
  return out
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Packs one row of samples at `depth` bits, big-endian, as a PNG scanline stores them. */
function packRow(samples: readonly number[], depth: number): Uint8Array {
  if (depth === 16) return new Uint8Array(samples.flatMap((v) => [v >> 8, v & 0xff]))
  if (depth === 8) return Uint8Array.from(samples)
  const out = new Uint8Array(Math.ceil((samples.length * depth) / 8))
  samples.forEach((v, i) => {
    out[Math.floor((i * depth) / 8)] |= v << (8 - depth * ((i % (8 / depth)) + 1))
  })
  return out
}

interface PngSpec {
  width: number
  height: number
  depth: number
  colorType: number
  /** Samples row by row (channels interleaved). */
  rows: number[][]
  /** Chunks between IHDR and IDAT (PLTE, tRNS). */
  extra?: Uint8Array[]
  /** Filter type of each row (default 0), applied here so the decoder must undo it. */
  filters?: number[]
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }

/** Applies PNG filter `type` to one packed row (PNG spec §9.2), given the previous row. */
function filterRow(type: number, row: Uint8Array, prev: Uint8Array, bpp: number): Uint8Array {
  const out = new Uint8Array(row.length)
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0
    const b = prev[i] ?? 0
    const c = i >= bpp ? (prev[i - bpp] ?? 0) : 0
    const p = a + b - c
    const paeth =
      Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
        ? a
        : Math.abs(p - b) <= Math.abs(p - c)
          ? b
          : c
    const predictor = [0, a, b, (a + b) >> 1, paeth][type]
    out[i] = (row[i] - predictor) & 0xff
  }
  return out
}

function png(spec: PngSpec): Uint8Array {
  const ihdr = new Uint8Array(13)
  const view = new DataView(ihdr.buffer)
  view.setUint32(0, spec.width)
  view.setUint32(4, spec.height)
  ihdr.set([spec.depth, spec.colorType, 0, 0, 0], 8)
  const bpp = Math.max(1, (spec.depth * CHANNELS[spec.colorType]) / 8)
  let prev: Uint8Array = new Uint8Array(0)
  const lines = spec.rows.map((samples, y) => {
    const row = packRow(samples, spec.depth)
    const type = spec.filters?.[y] ?? 0
    const line = concat([Uint8Array.of(type), filterRow(type, row, prev, bpp)])
    prev = row
    return line
  })
  return concat([
    Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
    chunk('IHDR', ihdr),
    ...(spec.extra ?? []),
    chunk('IDAT', zlibSync(concat(lines))),
    chunk('IEND', new Uint8Array(0)),
  ])
}

/** A random RGB PNG (the repo's encoder), so that each test stores bytes no other test did. */
function uniqueRgbPng(width = 4, height = 3): { bytes: Uint8Array; rgb: Uint8Array } {
  const rgb = crypto.getRandomValues(new Uint8Array(width * height * 3))
  return { bytes: encodePng({ width, height, data: rgb }), rgb }
}

function base64(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s)
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0))
}

// --- JPEG fixtures (Pillow 9.4, 24×16: a colour ramp with an orange disc) ----------------------
// Image.fromarray(ramp).save(f, 'JPEG', quality=75) / (quality=85, progressive=True) /
// .convert('L').save(f, 'JPEG', quality=90); sha256 of np.array(Image.open(f).convert(mode)).

const JPEG = {
  baseline420: {
    base64:
      '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAQABgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDzjTvDr3M6QxqNzHqeAK7GPwVZxwAefIZf720bevp9PetOx0loZFkRcMOnFbsdhNIRxgV5maZli5TXsJWX6/5f0zTh7N8HKk/bStL9PLz/AKRxcWgmKQoyjI9KK9Ft9FJOSuTRWTzSVlzPU+roZyuX3Xof/9k=',
    rgb: '3f8f51ce473eaaa60da69b1f700a46c10e2ed7650fd9791b5245523b357b0d84',
    l: '808803b5da4994ec80a40604d1f1743a69b1553c4f90718648d3606fa141f0ec',
  },
  progressive420: {
    base64:
      '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQaFRERGCEYGh0dHx8fExciJCIeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wgARCAAQABgDASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAABgAF/8QAFwEAAwEAAAAAAAAAAAAAAAAAAgMFBv/aAAwDAQACEAMQAAABDJ9DWmmWm8vT/wD/xAAaEAACAwEBAAAAAAAAAAAAAAABAgADBAUR/9oACAEBAAEFAs+Mu68yoKuTw0ZypWpjK80//8QAHREAAAUFAAAAAAAAAAAAAAAAAAECAwUEEhMhIv/aAAgBAwEBPwGBlKVTZ5VdBmXK3Rj/xAAcEQABAwUAAAAAAAAAAAAAAAABAAIFBBMVIUH/2gAIAQIBAT8BkpCpLhaOlkj0r//EABwQAAIBBQEAAAAAAAAAAAAAAAABMQIQERIyUf/aAAgBAQAGPwJUpSdvb0wJq0H/xAAdEAADAAAHAAAAAAAAAAAAAAAAAREhMUFRYZHh/9oACAEBAAE/IVrruIuvAp16OuSwEFRo0eFcx//aAAwDAQACAAMAAAAQH/8A/8QAGxEBAAICAwAAAAAAAAAAAAAAETFBAAEhUYH/2gAIAQMBAT8Q4aNIUDUFvsF51FWf/8QAHREAAQQCAwAAAAAAAAAAAAAAEQABIUExYVFxof/aAAgBAgEBPxCDvQE7Nec0nC2YT2v/xAAcEAEAAgMBAQEAAAAAAAAAAAABABEhQYExkfD/2gAIAQEAAT8QGAahwDavIdpv1evPzyKnlVZkZpbprkaMAxUKK7n/2Q==',
    rgb: 'b7f692ea5811dffec0c1565bf3aec72c275d6b2520798f258e3324aec1e7eaec',
    l: '3245daa99b5ac9f795ba41cb8039aa1330c8b5a651d2142f7cc9ddae4e756244',
  },
  gray: {
    base64:
      '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/wAALCAAQABgBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APkHwZ8GZ9c1K2sbaFBNM2AZDtVQBkkn0ABPrxxmvoOy/Zh0Kz05U/tG5e/H/Lfy1EXX/nn16cfe68+1VrD4SvY3TQSRqWQ4yvIPuK73wr8PJdNu4bmCPZKnQ7fUYP6E16XZeE7+8ZcIEB79a6/Rvhk0jBmiLMepIr//2Q==',
    rgb: '2d46c68dfcc927fe4c047d588b49b26966e52d12977a1d2161e866d2d37af214',
    l: '4883ef76eb4b192f8dbe1acd561d6d990c353c2edefa038e09d7ad5538e6e260',
  },
} as const

// --- helpers ---------------------------------------------------------------------------------

/** The real bucket, with every call counted (to see that a refusal writes nothing). */
function countingDeps(): { deps: PictureDeps; calls: { get: number; head: number; put: number } } {
  const calls = { get: 0, head: 0, put: 0 }
  const bucket = env.IMAGES
  const images: PictureDeps['images'] = {
    get: ((...args: Parameters<R2Bucket['get']>) => {
      calls.get++
      return bucket.get(...args)
    }) as R2Bucket['get'],
    head: (key) => {
      calls.head++
      return bucket.head(key)
    },
    put: ((...args: Parameters<R2Bucket['put']>) => {
      calls.put++
      return bucket.put(...args)
    }) as R2Bucket['put'],
  }
  return { deps: { images }, calls }
}

/** Awaits a refusal: a `ProblemError` of `slug` that names `field` in its detail and errors. */
async function refusal(
  promise: Promise<unknown>,
  slug: ProblemSlug,
  field: PictureField = 'image',
): Promise<ProblemError> {
  const e = await promise.then(
    () => expect.fail(`expected ${slug}`),
    (e: unknown) => e,
  )
  expect(e).toBeInstanceOf(ProblemError)
  const problem = e as ProblemError
  expect({ slug: problem.slug, detail: problem.detail?.startsWith(`${field}: `) }).toEqual({
    slug,
    detail: true,
  })
  expect(problem.extensions.errors).toEqual([{ field, detail: expect.any(String) }])
  return problem
}

async function expectNotStored(bytes: Uint8Array): Promise<void> {
  expect(await env.IMAGES.head(inputObjectKey(await sha256Hex(bytes)))).toBe(null)
}

const decode = (bytes: Uint8Array) => decodePicture('image', bytes)

// --- forms -----------------------------------------------------------------------------------

describe('readPicture: the forms of a picture field', () => {
  it('decodes base64, a data URL and a Blob alike, storing the upload at inputs/<sha256>', async () => {
    const { bytes, rgb } = uniqueRgbPng()
    const sha256 = await sha256Hex(bytes)
    const forms: unknown[] = [
      base64(bytes),
      `data:image/png;base64,${base64(bytes)}`,
      `data:application/octet-stream;base64,${base64(bytes)}`, // the declared type is ignored
      base64(bytes).replace(/(.{76})/g, '$1\n'), // wrapped MIME-style
      base64(bytes).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'), // base64url
      new Blob([bytes]),
      new File([bytes], 'in.png', { type: 'image/png' }),
    ]
    for (const value of forms) {
      const picture = await readPicture('image', value, { images: env.IMAGES })
      expect(picture).toEqual({ sha256, width: 4, height: 3, rgb })
    }
    const stored = await env.IMAGES.get(inputObjectKey(sha256))
    expect(stored?.httpMetadata?.contentType).toBe('image/png')
    expect(new Uint8Array(await stored!.arrayBuffer())).toEqual(bytes)
  })

  it('takes a Blob from multipart/form-data', async () => {
    const { bytes, rgb } = uniqueRgbPng()
    const form = new FormData()
    form.append('mask', new File([bytes], 'mask.png', { type: 'image/png' }))
    const parsed = await new Request('https://tti.test/', { method: 'POST', body: form }).formData()
    const picture = await readPicture('mask', parsed.get('mask'), { images: env.IMAGES })
    expect(picture.rgb).toEqual(rgb)
  })

  it('resolves a sha256 reference to a generated image and to an uploaded input', async () => {
    const generated = uniqueRgbPng()
    const generatedSha = await sha256Hex(generated.bytes)
    await env.IMAGES.put(imageObjectKey(generatedSha), generated.bytes)
    const fromOutput = await readPicture('image', generatedSha, { images: env.IMAGES })
    expect(fromOutput).toEqual({ sha256: generatedSha, width: 4, height: 3, rgb: generated.rgb })

    const uploaded = uniqueRgbPng()
    const { sha256 } = await readPicture('control_image', base64(uploaded.bytes), {
      images: env.IMAGES,
    })
    const { deps, calls } = countingDeps()
    const fromInput = await readPicture('control_image', sha256.toUpperCase(), deps)
    expect(fromInput.rgb).toEqual(uploaded.rgb)
    expect(calls.put).toBe(0) // a reference is never stored again
  })

  it('resolves the permanent URL of a generated image, from any origin', async () => {
    const { bytes, rgb } = uniqueRgbPng()
    const sha256 = await sha256Hex(bytes)
    await env.IMAGES.put(imageObjectKey(sha256), bytes)
    for (const url of [
      `https://tti.example.com/v1/images/${sha256}.png`,
      `http://localhost:8787/v1/images/${sha256}.png?download=1`,
      `/v1/images/${sha256}.png`,
    ]) {
      expect((await readPicture('image', url, { images: env.IMAGES })).rgb).toEqual(rgb)
    }
  })

  it('stores the same upload once', async () => {
    const { bytes } = uniqueRgbPng()
    const first = countingDeps()
    await readPicture('image', base64(bytes), first.deps)
    expect(first.calls.put).toBe(1)
    const before = await env.IMAGES.head(inputObjectKey(await sha256Hex(bytes)))
    const second = countingDeps()
    await readPicture('image', new Blob([bytes]), second.deps)
    expect(second.calls).toEqual({ get: 0, head: 1, put: 0 })
    const after = await env.IMAGES.head(inputObjectKey(await sha256Hex(bytes)))
    expect(after?.etag).toBe(before?.etag)
  })
})

// --- decoding --------------------------------------------------------------------------------

describe('decodePicture: PNG colour types as PIL convert("RGB") gives them', () => {
  const W = 5
  const H = 3
  /** Deterministic samples below 2^depth, one row a time. */
  const samples = (depth: number, channels: number, seed: number) =>
    Array.from({ length: H }, (_, y) =>
      Array.from(
        { length: W * channels },
        (_, i) => ((i + 1) * 7919 + y * 104729 + seed * 31) % 2 ** depth,
      ),
    )
  const rgbOf = (rows: number[][], channels: number, to8: (v: number) => number, colour = false) =>
    Uint8Array.from(
      rows.flatMap((row) =>
        Array.from({ length: W }, (_, x) => {
          const s = row.slice(x * channels, (x + 1) * channels)
          return colour ? [to8(s[0]), to8(s[1]), to8(s[2])] : [to8(s[0]), to8(s[0]), to8(s[0])]
        }).flat(),
      ),
    )

  it('scales 1, 2 and 4-bit gray up (×255, ×85, ×17) and keeps 8-bit gray exact in luminance', async () => {
    for (const [depth, scale] of [
      [1, 255],
      [2, 85],
      [4, 17],
      [8, 1],
    ]) {
      const rows = samples(depth, 1, depth)
      const p = await decode(png({ width: W, height: H, depth, colorType: 0, rows }))
      expect(p.rgb, `depth ${depth}`).toEqual(rgbOf(rows, 1, (v) => v * scale))
      expect(luminance(p)).toEqual(Uint8Array.from(rows.flat(), (v) => v * scale))
      expect(p.alpha).toBeUndefined()
    }
  })

  it('takes the high byte of 16-bit samples (gray, gray+alpha, RGB, RGBA)', async () => {
    const high = (v: number) => v >> 8
    const gray = samples(16, 1, 1)
    expect(
      (await decode(png({ width: W, height: H, depth: 16, colorType: 0, rows: gray }))).rgb,
    ).toEqual(rgbOf(gray, 1, high))
    const la = samples(16, 2, 2)
    const pLa = await decode(png({ width: W, height: H, depth: 16, colorType: 4, rows: la }))
    expect(pLa.rgb).toEqual(rgbOf(la, 2, high))
    expect(pLa.alpha).toEqual(
      Uint8Array.from(
        la.flatMap((r) => r.filter((_, i) => i % 2)),
        high,
      ),
    )
    const rgb = samples(16, 3, 3)
    expect(
      (await decode(png({ width: W, height: H, depth: 16, colorType: 2, rows: rgb }))).rgb,
    ).toEqual(rgbOf(rgb, 3, high, true))
    const rgba = samples(16, 4, 4)
    const pRgba = await decode(png({ width: W, height: H, depth: 16, colorType: 6, rows: rgba }))
    expect(pRgba.rgb).toEqual(rgbOf(rgba, 4, high, true))
    expect(pRgba.alpha).toEqual(
      Uint8Array.from(
        rgba.flatMap((r) => r.filter((_, i) => i % 4 === 3)),
        high,
      ),
    )
  })

  it('drops 8-bit alpha into `alpha` (gray+alpha, RGBA) and reads RGB from encodePng', async () => {
    const la = samples(8, 2, 5)
    const pLa = await decode(png({ width: W, height: H, depth: 8, colorType: 4, rows: la }))
    expect(pLa.rgb).toEqual(rgbOf(la, 2, (v) => v))
    expect(pLa.alpha).toEqual(Uint8Array.from(la.flatMap((r) => r.filter((_, i) => i % 2))))
    const rgba = samples(8, 4, 6)
    const pRgba = await decode(png({ width: W, height: H, depth: 8, colorType: 6, rows: rgba }))
    expect(pRgba.rgb).toEqual(rgbOf(rgba, 4, (v) => v, true))
    const { bytes, rgb } = uniqueRgbPng(W, H)
    expect(await decode(bytes)).toEqual({ format: 'png', width: W, height: H, rgb })
  })

  it('looks palettes up, with tRNS alpha (entries past tRNS are opaque)', async () => {
    const palette = [10, 20, 30, 200, 100, 0, 255, 255, 255]
    const rows = samples(2, 1, 7).map((r) => r.map((v) => v % 3))
    const plte = chunk('PLTE', Uint8Array.from(palette))
    const trns = chunk('tRNS', Uint8Array.of(0, 128)) // entry 2 is not listed: opaque
    for (const depth of [2, 8]) {
      const spec = { width: W, height: H, depth, colorType: 3, rows }
      const plain = await decode(png({ ...spec, extra: [plte] }))
      const expected = Uint8Array.from(rows.flat().flatMap((i) => palette.slice(3 * i, 3 * i + 3)))
      expect(plain.rgb).toEqual(expected)
      expect(plain.alpha).toBeUndefined()
      const transparent = await decode(png({ ...spec, extra: [plte, trns] }))
      expect(transparent.rgb).toEqual(expected)
      expect(transparent.alpha).toEqual(Uint8Array.from(rows.flat(), (i) => [0, 128, 255][i]))
    }
  })

  it('turns a tRNS colour key of gray and RGB into alpha 0 exactly where the samples match', async () => {
    const gray = samples(4, 1, 8)
    const key = gray[1][2]
    const g = await decode(
      png({
        width: W,
        height: H,
        depth: 4,
        colorType: 0,
        rows: gray,
        extra: [chunk('tRNS', Uint8Array.of(0, key))],
      }),
    )
    expect(g.alpha).toEqual(Uint8Array.from(gray.flat(), (v) => (v === key ? 0 : 255)))
    const rgb = samples(16, 3, 9)
    const [r, gg, b] = rgb[2].slice(0, 3)
    const trns = new Uint8Array(6)
    new DataView(trns.buffer).setUint16(0, r)
    new DataView(trns.buffer).setUint16(2, gg)
    new DataView(trns.buffer).setUint16(4, b)
    const c = await decode(
      png({
        width: W,
        height: H,
        depth: 16,
        colorType: 2,
        rows: rgb,
        extra: [chunk('tRNS', trns)],
      }),
    )
    const pixels = rgb.flatMap((row) =>
      Array.from({ length: W }, (_, x) => row.slice(3 * x, 3 * x + 3)),
    )
    expect(c.alpha).toEqual(
      Uint8Array.from(pixels, (p) => (p[0] === r && p[1] === gg && p[2] === b ? 0 : 255)),
    )
    expect(c.alpha!.filter((a) => a === 0).length).toBe(1)
  })

  it('undoes every filter type and Adam7 interlacing', async () => {
    const rows = samples(8, 3, 10)
    const filtered = png({ width: W, height: H, depth: 8, colorType: 2, rows, filters: [3, 4, 1] })
    const up = png({ width: W, height: H, depth: 8, colorType: 2, rows, filters: [0, 2, 2] })
    expect((await decode(filtered)).rgb).toEqual(rgbOf(rows, 3, (v) => v, true))
    expect((await decode(up)).rgb).toEqual(rgbOf(rows, 3, (v) => v, true))
    const data = crypto.getRandomValues(new Uint8Array(11 * 9 * 3))
    const adam7 = encodeWithFastPng(
      { width: 11, height: 9, data, channels: 3, depth: 8 },
      { interlace: 'Adam7' },
    )
    expect(adam7[28]).toBe(1) // IHDR interlace method
    expect((await decode(adam7)).rgb).toEqual(data)
  })
})

describe('luminance', () => {
  it("is PIL's convert('L'): (19595 R + 38470 G + 7471 B + 0x8000) >> 16", () => {
    const rgb = Uint8Array.of(255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 200, 77)
    const picture = { width: 6, height: 1, rgb }
    // Pillow 9.4 gives [255, 0, 76, 150, 29, 130] for these pixels: 255·19595 + 0x8000 >> 16 = 76, …
    expect(Array.from(luminance(picture))).toEqual([255, 0, 76, 150, 29, 130])
  })
})

describe('decodePicture: JPEG as Pillow 9.4 (libjpeg-turbo) decodes it', () => {
  for (const [name, fixture] of Object.entries(JPEG)) {
    it(`${name}: exactly Pillow's pixels`, async () => {
      const p = await decode(fromBase64(fixture.base64))
      expect({ format: p.format, width: p.width, height: p.height, alpha: p.alpha }).toEqual({
        format: 'jpeg',
        width: 24,
        height: 16,
        alpha: undefined,
      })
      expect(await sha256Hex(p.rgb)).toBe(fixture.rgb)
      expect(await sha256Hex(luminance(p))).toBe(fixture.l)
    })
  }

  it('stores an uploaded JPEG as image/jpeg', async () => {
    const bytes = fromBase64(JPEG.gray.base64)
    const picture = await readPicture('image', new Blob([bytes]), {
      images: env.IMAGES,
    })
    const stored = await env.IMAGES.head(inputObjectKey(picture.sha256))
    expect(stored?.httpMetadata?.contentType).toBe('image/jpeg')
  })
})

// --- refusals --------------------------------------------------------------------------------

describe('readPicture: refusals name the field and store nothing', () => {
  const read = (field: PictureField, value: unknown, deps?: PictureDeps, limits = {}) =>
    readPicture(field, value, deps ?? { images: env.IMAGES }, limits)

  it('refuses what is not a PNG or JPEG (422 invalid-image)', async () => {
    const { deps, calls } = countingDeps()
    const text = new TextEncoder().encode('hello, this is not a picture at all')
    const e = await refusal(read('mask', base64(text), deps), 'invalid-image', 'mask')
    expect(e.detail).toBe('mask: not a PNG or JPEG picture')
    await expectProblem(e.getResponse(), 422, 'invalid-image')
    const gif = new TextEncoder().encode('GIF89a\x01\x00\x01\x00\x00\x00\x00;')
    const g = await refusal(
      read('control_image', new Blob([gif]), deps),
      'invalid-image',
      'control_image',
    )
    expect(g.detail).toContain('GIF')
    await refusal(read('image', 'not base64 !', deps), 'invalid-image')
    await refusal(read('image', 'data:image/png,%89PNG', deps), 'invalid-image')
    await refusal(read('image', '', deps), 'invalid-image')
    await refusal(read('image', 42, deps), 'invalid-image')
    await refusal(read('image', { url: 'x' }, deps), 'invalid-image')
    expect(calls.put).toBe(0)
  })

  it('refuses truncated and corrupt PNGs and JPEGs', async () => {
    const { deps, calls } = countingDeps()
    const { bytes } = uniqueRgbPng(16, 16)
    const cases: [string, Uint8Array][] = [
      ['PNG cut in half', bytes.subarray(0, bytes.length >> 1)],
      ['PNG without IEND', bytes.subarray(0, bytes.length - 12)],
      ['PNG header only', bytes.subarray(0, 33)],
    ]
    const flipped = bytes.slice()
    flipped[bytes.length - 20] ^= 0xff // inside IDAT: the CRC no longer matches
    cases.push(['PNG with a flipped IDAT byte', flipped])
    const short = png({
      width: 8,
      height: 8,
      depth: 8,
      colorType: 0,
      rows: [[1, 2, 3, 4, 5, 6, 7, 8]],
    })
    cases.push(['PNG whose data holds one of eight rows', short])
    const jpeg = fromBase64(JPEG.progressive420.base64)
    cases.push(['JPEG cut short', jpeg.subarray(0, jpeg.length - 100)])
    cases.push(['JPEG cut in its headers', jpeg.subarray(0, 300)])
    for (const [name, b] of cases) {
      const e = await refusal(read('image', base64(b), deps), 'invalid-image')
      expect(e.detail, name).toMatch(/^image: corrupt (PNG|JPEG): /)
      await expectNotStored(b)
    }
    expect(calls.put).toBe(0)
  })

  it("reports libjpeg's error, and the next JPEG decodes (each decode has its own instance)", async () => {
    const jpeg = fromBase64(JPEG.baseline420.base64)
    const bogus = jpeg.slice()
    const dht = bogus.findIndex((b, i) => b === 0xff && bogus[i + 1] === 0xc4)
    bogus.fill(0xff, dht + 5, dht + 5 + 16) // code-length counts of 255: no Huffman table
    const e = await refusal(read('image', new Blob([bogus])), 'invalid-image')
    expect(e.detail).toBe('image: corrupt JPEG: libjpeg: Bogus Huffman table definition')
    expect(await sha256Hex((await decode(jpeg)).rgb)).toBe(JPEG.baseline420.rgb)
  })

  it('refuses more bytes than the limit (413) before decoding base64 or reading a Blob', async () => {
    const { deps, calls } = countingDeps()
    const max = PICTURE_LIMITS.maxBytes
    const e = await refusal(
      read('mask', new Blob([new Uint8Array(max + 1)]), deps),
      'image-too-large',
      'mask',
    )
    expect(e.extensions.limit).toBe(max)
    await expectProblem(e.getResponse(), 413, 'image-too-large')

    class Unreadable extends Blob {
      override stream(): ReadableStream<Uint8Array> {
        throw new Error('read a Blob that is over the limit')
      }
    }
    await refusal(
      read('image', new Unreadable([new Uint8Array(101)]), deps, { maxBytes: 100 }),
      'image-too-large',
    )
    // Not even valid base64: the length alone refuses it.
    await refusal(read('image', '!'.repeat(200), deps, { maxBytes: 100 }), 'image-too-large')
    const { bytes } = uniqueRgbPng(8, 8)
    await refusal(
      read('image', `data:image/png;base64,${base64(bytes)}`, deps, { maxBytes: bytes.length - 1 }),
      'image-too-large',
    )
    await expectNotStored(bytes)
    expect(calls.put).toBe(0)
  })

  it('refuses more pixels than the limit from the header alone (422)', async () => {
    const { deps, calls } = countingDeps()
    // IHDR claims 100000×100000; the IDAT is not even zlib: only the header was read.
    const ihdr = new Uint8Array(13)
    new DataView(ihdr.buffer).setUint32(0, 100_000)
    new DataView(ihdr.buffer).setUint32(4, 100_000)
    ihdr.set([8, 2, 0, 0, 0], 8)
    const bomb = concat([
      Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
      chunk('IHDR', ihdr),
      chunk('IDAT', Uint8Array.of(1, 2, 3)),
      chunk('IEND', new Uint8Array(0)),
    ])
    const e = await refusal(
      read('control_image', base64(bomb), deps),
      'image-too-many-pixels',
      'control_image',
    )
    expect(e.detail).toBe(
      'control_image: 100000×100000 is 10000000000 pixels; the limit is 4194304',
    )
    expect(e.extensions.limit).toBe(PICTURE_LIMITS.maxPixels)
    await expectProblem(e.getResponse(), 422, 'image-too-many-pixels')

    // A JPEG whose frame header claims 60000×60000, its scan data cut away.
    const jpeg = fromBase64(JPEG.baseline420.base64).slice(0, 400)
    const sof = jpeg.findIndex((b, i) => b === 0xff && jpeg[i + 1] === 0xc0)
    jpeg.set([0xea, 0x60, 0xea, 0x60], sof + 5)
    await refusal(read('image', new Blob([jpeg]), deps), 'image-too-many-pixels')

    const { bytes } = uniqueRgbPng(8, 8)
    await refusal(read('image', base64(bytes), deps, { maxPixels: 63 }), 'image-too-many-pixels')
    await expectNotStored(bytes)
    expect(calls.put).toBe(0)
  })

  it('refuses a small PNG whose data inflates past what its header allows (a zip bomb)', async () => {
    const inflated = new Uint8Array(4 * 1024 * 1024) // 4 MiB of zeros deflate to ~4 KiB
    const ihdr = new Uint8Array(13)
    new DataView(ihdr.buffer).setUint32(0, 1)
    new DataView(ihdr.buffer).setUint32(4, 1)
    ihdr.set([8, 2, 0, 0, 0], 8)
    const bomb = concat([
      Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
      chunk('IHDR', ihdr),
      chunk('IDAT', zlibSync(inflated, { level: 9 })),
      chunk('IEND', new Uint8Array(0)),
    ])
    expect(bomb.length).toBeLessThan(PICTURE_LIMITS.maxBytes)
    const e = await refusal(read('image', new Blob([bomb])), 'invalid-image')
    expect(e.detail).toBe('image: corrupt PNG: image data inflates past 4 bytes')
    await expectNotStored(bomb)
  })

  it('never inflates ancillary chunks (an iCCP profile bomb decodes as if it were absent)', async () => {
    const { bytes, rgb } = uniqueRgbPng()
    const profile = concat([
      new TextEncoder().encode('icc\0\0'), // name, NUL, compression method 0
      zlibSync(new Uint8Array(4 * 1024 * 1024), { level: 9 }),
    ])
    const withProfile = concat([bytes.subarray(0, 33), chunk('iCCP', profile), bytes.subarray(33)])
    expect((await decode(withProfile)).rgb).toEqual(rgb)
  })

  it('refuses a JPEG of more scans than the limit before decoding it', async () => {
    const jpeg = fromBase64(JPEG.progressive420.base64)
    const e = await refusal(
      read('image', new Blob([jpeg]), undefined, { maxJpegScans: 2 }),
      'invalid-image',
    )
    expect(e.detail).toMatch(/^image: a JPEG of \d+ scans; the limit is 2$/)
    // The last scan repeated 200 times: still a small file.
    const lastScan = jpeg.findLastIndex((b, i) => b === 0xff && jpeg[i + 1] === 0xda)
    const scan = jpeg.subarray(lastScan, jpeg.length - 2)
    const many = concat([
      jpeg.subarray(0, jpeg.length - 2),
      ...Array(200).fill(scan),
      Uint8Array.of(0xff, 0xd9),
    ])
    expect(many.length).toBeLessThan(64 * 1024)
    const m = await refusal(read('image', new Blob([many])), 'invalid-image')
    expect(m.extensions.limit).toBe(PICTURE_LIMITS.maxJpegScans)
    await expectNotStored(many)
  })

  it('refuses an unknown reference (422 image-not-found) and fetches no URL', async () => {
    const { deps, calls } = countingDeps()
    const unknown = 'e'.repeat(64)
    const e = await refusal(read('mask', unknown, deps), 'image-not-found', 'mask')
    expect(e.detail).toBe(`mask: no stored image or input has sha256 ${unknown}`)
    await expectProblem(e.getResponse(), 422, 'image-not-found')
    expect(calls.get).toBe(2) // images/<sha256>.png, then inputs/<sha256>
    await refusal(
      read('mask', `https://tti.test/v1/images/${unknown}.png`, deps),
      'image-not-found',
      'mask',
    )

    const fetch = globalThis.fetch
    let fetched = 0
    globalThis.fetch = (...args: Parameters<typeof fetch>) => {
      fetched++
      return fetch(...args)
    }
    try {
      for (const url of [
        'https://example.com/cat.png',
        `https://tti.test/v1/images/${unknown}.jpg`,
      ]) {
        const u = await refusal(read('image', url, deps), 'invalid-image')
        expect(u.detail).toContain('other URLs are not fetched')
      }
    } finally {
      globalThis.fetch = fetch
    }
    expect(fetched).toBe(0)
    expect(calls.put).toBe(0)
  })

  it('refuses a stored picture that is over the byte limit', async () => {
    const { bytes } = uniqueRgbPng(8, 8)
    const sha256 = await sha256Hex(bytes)
    await env.IMAGES.put(imageObjectKey(sha256), bytes)
    const e = await refusal(read('image', sha256, undefined, { maxBytes: 10 }), 'image-too-large')
    expect(e.extensions.limit).toBe(10)
  })
})
