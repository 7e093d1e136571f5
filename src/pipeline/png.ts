/**
 * @module
 * PNG encoding (8-bit RGB, zlib via fflate, which runs in every runtime we target) with a
 * `parameters` text chunk in the format AUTOMATIC1111's web UI writes and most Stable Diffusion
 * tools read back: the prompt, a `Negative prompt:` line, then `Key: value` pairs.
 */
import { zlibSync } from 'fflate'
import type { RgbImage } from './image'

/** Generation settings recorded in the PNG. */
export interface PngParameters {
  prompt: string
  negativePrompt: string
  steps: number
  scheduler: string
  guidanceScale: number
  seed: number
  width: number
  height: number
  model: string
  modelDigest: string
  /** Further `Key: value` settings (the conditioners'), appended in order. */
  extra?: readonly (readonly [string, string | number])[]
}

/** Formats settings as the A1111 `parameters` text. */
export function formatParameters(p: PngParameters): string {
  const lines = [p.prompt]
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`)
  lines.push(
    [
      `Steps: ${p.steps}`,
      `Sampler: ${p.scheduler}`,
      `CFG scale: ${p.guidanceScale}`,
      `Seed: ${p.seed}`,
      `Size: ${p.width}x${p.height}`,
      `Model hash: ${p.modelDigest.slice(0, 10)}`,
      `Model: ${p.model}`,
      `Model digest: ${p.modelDigest}`,
      ...(p.extra ?? []).map(([k, v]) => `${k}: ${v}`),
    ].join(', '),
  )
  return lines.join('\n')
}

/** The eight bytes every PNG starts with (PNG spec §5.2). */
const PNG_SIGNATURE: readonly number[] = Object.freeze([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
])

/** Width and height from a PNG's IHDR chunk, or undefined when the bytes are not a PNG. */
export function pngSize(b: Uint8Array): { width: number; height: number } | undefined {
  if (b.length < 33 || PNG_SIGNATURE.some((x, i) => b[i] !== x)) return undefined
  // IHDR is the first chunk: length(4) type(4) at offset 8, then width and height (big-endian).
  if (String.fromCharCode(b[12], b[13], b[14], b[15]) !== 'IHDR') return undefined
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const width = view.getUint32(16)
  const height = view.getUint32(20)
  return width && height ? { width, height } : undefined
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)
  return crc
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, data.length)
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i)
  out.set(data, 8)
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0)
  return out
}

/** A text chunk: tEXt when the text is Latin-1, else uncompressed UTF-8 iTXt. */
function textChunk(keyword: string, text: string): Uint8Array {
  const key = new TextEncoder().encode(keyword)
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\xff]*$/.test(text)) {
    const body = new Uint8Array(key.length + 1 + text.length)
    body.set(key)
    for (let i = 0; i < text.length; i++) body[key.length + 1 + i] = text.charCodeAt(i)
    return chunk('tEXt', body)
  }
  const utf8 = new TextEncoder().encode(text)
  // keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL
  const body = new Uint8Array(key.length + 5 + utf8.length)
  body.set(key)
  body.set(utf8, key.length + 5)
  return chunk('iTXt', body)
}

/** Encodes an RGB image as PNG, with optional text chunks (keyword → text). */
export function encodePng(image: RgbImage, text: Record<string, string> = {}): Uint8Array {
  const { width, height, data } = image
  if (data.length !== width * height * 3)
    throw new RangeError('RGB data does not match the image size')
  const raw = new Uint8Array((width * 3 + 1) * height)
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0 // filter: none
    raw.set(data.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1)
  }
  const ihdr = new Uint8Array(13)
  const v = new DataView(ihdr.buffer)
  v.setUint32(0, width)
  v.setUint32(4, height)
  ihdr.set([8, 2, 0, 0, 0], 8) // 8-bit, truecolour, deflate, adaptive filtering, no interlace
  const parts = [
    new Uint8Array(PNG_SIGNATURE),
    chunk('IHDR', ihdr),
    ...Object.entries(text).map(([k, t]) => textChunk(k, t)),
    chunk('IDAT', zlibSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Reads the text chunks of a PNG (tEXt and uncompressed iTXt). */
export function readPngText(png: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {}
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength)
  for (let o = 8; o + 12 <= png.length; ) {
    const len = view.getUint32(o)
    const type = String.fromCharCode(...png.subarray(o + 4, o + 8))
    const body = png.subarray(o + 8, o + 8 + len)
    if (type === 'tEXt' || type === 'iTXt') {
      const nul = body.indexOf(0)
      const key = new TextDecoder('latin1').decode(body.subarray(0, nul))
      if (type === 'tEXt') out[key] = new TextDecoder('latin1').decode(body.subarray(nul + 1))
      else {
        let p = nul + 3
        p = body.indexOf(0, p) + 1
        p = body.indexOf(0, p) + 1
        out[key] = new TextDecoder().decode(body.subarray(p))
      }
    }
    o += 12 + len
  }
  return out
}
