/**
 * @module
 * Input pictures of the image conditioners: `image` (image-to-image, inpainting), `mask`
 * (inpainting) and `control_image` (ControlNet). `readPicture` turns what a client sent into
 * 8-bit pixels, the way diffusers sees a picture after PIL's `Image.open(f).convert('RGB')`.
 *
 *   const init = await readPicture('image', body.image, { images: env.IMAGES })
 *   const mask = luminance(await readPicture('mask', body.mask, { images: env.IMAGES }))
 *
 * Forms of a picture field: base64 text, a base64 data URL (its declared type is ignored), a
 * Blob/File from multipart/form-data, or a reference to a stored picture: its sha256 or its
 * permanent URL (any origin, path `/v1/images/<sha256>.png`). References name a generated image
 * (`images/<sha256>.png`) or an uploaded input (`inputs/<sha256>`). Uploads are stored under their
 * hash after they decode, so a refused picture stores nothing; inputs are never served, only used
 * by reference. URLs of other paths are refused, never fetched.
 *
 * Safety, cheapest check first: the byte limit (413) before base64 is decoded or a Blob is read;
 * the format from magic bytes; then width × height from the PNG IHDR or the JPEG SOF (422) before
 * any pixel is decoded; for PNG the zlib stream is inflated once more, bounded, before the decoder
 * inflates it, so a small IDAT that claims to hold more data than the header allows (a zip bomb)
 * costs at most the expected size plus one slice's expansion.
 *
 * Decoders, chosen to match PIL and to run unchanged in workerd and Node:
 * - PNG: `fast-png` (pure TypeScript, ESM; inflates with fflate, which the bundle already has;
 *   every colour type, bit depths 1–16, tRNS, Adam7). PNG decoding is exact, so PIL's pixels
 *   follow from the conversions below.
 * - JPEG: `@jsquash/jpeg`'s decoder, libjpeg-turbo (MozJPEG) compiled to WebAssembly (166 KB),
 *   with libjpeg's defaults (islow IDCT, fancy upsampling) as PIL's libjpeg-turbo uses them: its
 *   pixels equal Pillow 9.4's. The pure-JS `jpeg-js` was measured too: nearest-neighbour chroma
 *   upsampling and truncated colour conversion put it up to 44 levels off PIL on 4:2:0 files
 *   (mean 1.8), 3.6× slower, and ~27 bytes a pixel of garbage while decoding.
 *
 * PIL parity (`convert('RGB')`): gray is replicated, alpha dropped, palettes looked up, 1/2/4-bit
 * gray scaled (×255, ×85, ×17), 16-bit samples take the high byte (PIL's `RGB;16B`, `RGBA;16B`,
 * `LA;16B`). Checked against Pillow 9.4 for every PNG colour type and depth, and by
 * test/node/pictures.test.ts on the golden input pictures.
 * NOTE: 16-bit gray also takes the high byte; PIL opens it as mode `I` and *clips* to 255 on
 * `convert('L'|'RGB')` (python-pillow/Pillow#3159), which turns a 16-bit depth map white.
 * NOTE: stricter than PIL on broken files: a palette index past the palette (PIL: gray ramp) or
 * image data shorter than the header promises (PIL: zero rows) is refused. tRNS alpha compares
 * raw samples, as the PNG spec says (Pillow 9.4 compares 2/4/16-bit keys against 8-bit values).
 * EXIF orientation is not applied (nor is it by `Image.open`; diffusers' `load_image` applies
 * it). Colour profiles and gamma are ignored, as PIL does.
 */
import { decode as decodePng, type DecodedPng } from 'fast-png'
import { Unzlib } from 'fflate'
import mozjpegDecoder from '@jsquash/jpeg/codec/dec/mozjpeg_dec.js'
import { initEmscriptenModule } from '@jsquash/jpeg/utils.js'
import { imageObjectKey } from '../cache/image-store'
import { ProblemError, type ProblemSlug } from '../problem'
import { readCapped, sha256Hex } from '../util'
import { codecWasm } from './wasm-module'

/** The request fields that carry a picture. */
export type PictureField = 'image' | 'mask' | 'control_image'

/** A decoded picture: 8-bit HWC RGB as PIL's `convert('RGB')` gives it. */
export interface Picture {
  /** SHA-256 of the source bytes (the PNG or JPEG file), lowercase hex. */
  sha256: string
  width: number
  height: number
  /** HWC RGB, `width × height × 3` bytes: alpha dropped, gray replicated. */
  rgb: Uint8Array
  /** HW alpha, when the source has transparency (an alpha channel or a tRNS chunk). */
  alpha?: Uint8Array
}

/** The limits a picture must keep (`PICTURE_LIMITS` unless a caller narrows them). */
export interface PictureLimits {
  /** Bytes of the encoded file; more is a 413 `image-too-large`. */
  maxBytes: number
  /** width × height; more is a 422 `image-too-many-pixels`, refused from the header alone. */
  maxPixels: number
  /**
   * Scans of a JPEG; more is a 422 `invalid-image`. Each progressive scan walks every block, so a
   * small file of thousands of scans costs minutes of CPU; encoders write 1–3, or about 10 when
   * progressive.
   */
  maxJpegScans: number
}

/**
 * Default limits: 4 MiB, 2048² pixels. NOTE: decoding 2048² takes ~70 MB at its peak (RGBA in the
 * codec, its copy, the RGB out), over half a Worker's 128 MB; callers that know the model's
 * largest size should pass that as `maxPixels`.
 */
export const PICTURE_LIMITS: Readonly<PictureLimits> = Object.freeze({
  maxBytes: 4 * 1024 * 1024,
  maxPixels: 2048 * 2048,
  maxJpegScans: 100,
})

/** The bucket a picture is read from and an upload stored in, narrowed so tests can wrap it. */
export interface PictureDeps {
  images: Pick<R2Bucket, 'get' | 'put' | 'head'>
}

/** The R2 key of an uploaded input picture (not publicly served). */
export function inputObjectKey(sha256: string): string {
  return `inputs/${sha256}`
}

/**
 * Reads one picture field: validates, decodes and, for an upload, stores the bytes at
 * `inputs/<sha256>` (once; only after they decoded). Throws a `ProblemError` naming `field`.
 */
export async function readPicture(
  field: PictureField,
  value: unknown,
  deps: PictureDeps,
  opts: Partial<PictureLimits> = {},
): Promise<Picture> {
  const limits = { ...PICTURE_LIMITS, ...opts }
  const source = await sourceBytes(field, value, deps, limits)
  const decoded = await decodePicture(field, source.bytes, limits)
  const sha256 = source.sha256 ?? (await sha256Hex(source.bytes))
  if (!source.sha256) {
    await putInputOnce(deps.images, sha256, source.bytes, CONTENT_TYPES[decoded.format])
  }
  const { format: _format, ...pixels } = decoded
  return { sha256, ...pixels }
}

/**
 * Luminance as PIL's `convert('L')` (Pillow's `L24` in libImaging/Convert.c): ITU-R 601-2 weights in
 * 16-bit fixed point, rounded. The weights sum to 65536, so a gray picture gives its gray back.
 */
export function luminance(picture: Pick<Picture, 'width' | 'height' | 'rgb'>): Uint8Array {
  const { rgb } = picture
  const out = new Uint8Array(picture.width * picture.height)
  for (let i = 0, j = 0; i < out.length; i++, j += 3) {
    out[i] = (rgb[j] * 19595 + rgb[j + 1] * 38470 + rgb[j + 2] * 7471 + 0x8000) >>> 16
  }
  return out
}

/** The formats decoded, as sniffed from magic bytes. */
export type PictureFormat = 'png' | 'jpeg'

const CONTENT_TYPES: Readonly<Record<PictureFormat, string>> = Object.freeze({
  png: 'image/png',
  jpeg: 'image/jpeg',
})

/**
 * Decodes PNG or JPEG bytes (format from magic bytes) within `limits.maxPixels`, without I/O.
 * Throws a `ProblemError` naming `field`.
 */
export async function decodePicture(
  field: PictureField,
  bytes: Uint8Array,
  limits: Partial<Pick<PictureLimits, 'maxPixels' | 'maxJpegScans'>> = {},
): Promise<Omit<Picture, 'sha256'> & { format: PictureFormat }> {
  const { maxPixels, maxJpegScans } = { ...PICTURE_LIMITS, ...limits }
  const format = sniff(bytes)
  if (format === 'png') return { format, ...decodePngPicture(field, bytes, maxPixels) }
  if (format === 'jpeg') {
    return { format, ...(await decodeJpegPicture(field, bytes, maxPixels, maxJpegScans)) }
  }
  const detail = format
    ? `${format} pictures are not supported; send PNG or JPEG`
    : 'not a PNG or JPEG picture'
  return refuse('invalid-image', field, detail)
}

// --- errors ----------------------------------------------------------------------------------

/** Throws `slug` with the field in `detail` and in `errors`, as `throwFieldErrors` lists them. */
function refuse(
  slug: ProblemSlug,
  field: PictureField,
  detail: string,
  extensions: Record<string, unknown> = {},
): never {
  throw new ProblemError(slug, {
    detail: `${field}: ${detail}`,
    extensions: { errors: [{ field, detail }], ...extensions },
  })
}

function tooLarge(field: PictureField, bytes: number | string, maxBytes: number): never {
  return refuse('image-too-large', field, `${bytes} bytes; the limit is ${maxBytes}`, {
    limit: maxBytes,
  })
}

function checkPixels(field: PictureField, width: number, height: number, maxPixels: number): void {
  if (width === 0 || height === 0)
    refuse('invalid-image', field, `the picture is ${width}×${height}`)
  if (width * height > maxPixels) {
    refuse(
      'image-too-many-pixels',
      field,
      `${width}×${height} is ${width * height} pixels; the limit is ${maxPixels}`,
      { limit: maxPixels },
    )
  }
}

// --- sources ---------------------------------------------------------------------------------

/** Matches a sha256 reference (normalised to lowercase). */
const SHA256_REF = /^[0-9a-f]{64}$/i
/** The path of a permanent image URL (`/v1/images/<sha256>.png`). */
const IMAGE_URL_PATH = /^\/v1\/images\/([0-9a-f]{64})\.png$/

interface Source {
  bytes: Uint8Array
  /** Set for a reference: the content hash it named. Unset for an upload, which gets stored. */
  sha256?: string
}

async function sourceBytes(
  field: PictureField,
  value: unknown,
  deps: PictureDeps,
  limits: PictureLimits,
): Promise<Source> {
  if (typeof Blob !== 'undefined' && value instanceof Blob) {
    if (value.size > limits.maxBytes) tooLarge(field, value.size, limits.maxBytes)
    const bytes = await readCapped(value.stream(), limits.maxBytes)
    if (!bytes) return tooLarge(field, `over ${limits.maxBytes}`, limits.maxBytes)
    return { bytes }
  }
  if (typeof value !== 'string') {
    return refuse(
      'invalid-image',
      field,
      'expected base64 text, a data URL, an uploaded file, or a sha256 or URL of a stored image',
    )
  }
  const text = value.trim()
  if (SHA256_REF.test(text)) return fetchStored(field, text.toLowerCase(), deps, limits)
  if (/^https?:\/\//i.test(text) || text.startsWith('/v1/')) {
    const ref = imageUrlHash(text)
    if (!ref) {
      return refuse(
        'invalid-image',
        field,
        "only this API's image URLs (/v1/images/<sha256>.png) are accepted; other URLs are not fetched",
      )
    }
    return fetchStored(field, ref, deps, limits)
  }
  if (/^data:/i.test(text)) {
    const comma = text.indexOf(',')
    if (comma < 0 || !/;base64$/i.test(text.slice(5, comma))) {
      return refuse('invalid-image', field, 'a data URL must be base64 (data:image/png;base64,…)')
    }
    return { bytes: decodeBase64(field, text.slice(comma + 1), limits.maxBytes) }
  }
  return { bytes: decodeBase64(field, text, limits.maxBytes) }
}

/** The sha256 of a permanent image URL (any origin, query and fragment ignored), or undefined. */
function imageUrlHash(text: string): string | undefined {
  let url: URL
  try {
    url = new URL(text, 'https://relative.invalid')
  } catch {
    return undefined
  }
  return IMAGE_URL_PATH.exec(url.pathname)?.[1]
}

/** Reads a stored picture: a generated image first, then an uploaded input. */
async function fetchStored(
  field: PictureField,
  sha256: string,
  deps: PictureDeps,
  limits: PictureLimits,
): Promise<Source> {
  for (const key of [imageObjectKey(sha256), inputObjectKey(sha256)]) {
    const obj = await deps.images.get(key)
    if (!obj) continue
    if (obj.size > limits.maxBytes) {
      await obj.body.cancel()
      return tooLarge(field, obj.size, limits.maxBytes)
    }
    const bytes = await readCapped(obj.body, limits.maxBytes)
    if (!bytes) return tooLarge(field, `over ${limits.maxBytes}`, limits.maxBytes)
    return { bytes, sha256 }
  }
  return refuse('image-not-found', field, `no stored image or input has sha256 ${sha256}`)
}

/**
 * Decodes base64 (standard or URL-safe alphabet, padding and whitespace optional), checking the
 * decoded length against `maxBytes` from the text's length before decoding anything.
 */
function decodeBase64(field: PictureField, text: string, maxBytes: number): Uint8Array {
  // Whitespace is allowed (wrapped base64), so bound the raw text loosely before scanning it.
  if (text.length > 2 * Math.ceil(maxBytes / 3) * 4 + 1024) {
    tooLarge(field, `about ${Math.floor((text.length * 3) / 4)}`, maxBytes)
  }
  const compact = /\s/.test(text) ? text.replace(/\s+/g, '') : text
  const body = compact.replace(/={1,2}$/, '')
  const length = Math.floor((body.length * 3) / 4)
  if (length > maxBytes) tooLarge(field, length, maxBytes)
  if (!body.length || body.length % 4 === 1 || !/^[A-Za-z0-9+/_-]*$/.test(body)) {
    refuse('invalid-image', field, 'not valid base64, a data URL, or a reference')
  }
  const binary = atob(body.replace(/-/g, '+').replace(/_/g, '/'))
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

/** Stores an upload unless it exists; the key is its content hash, so R2 verifies the bytes. */
async function putInputOnce(
  bucket: PictureDeps['images'],
  sha256: string,
  bytes: Uint8Array,
  contentType: string,
): Promise<void> {
  const key = inputObjectKey(sha256)
  if (await bucket.head(key)) return
  await bucket.put(key, bytes, {
    sha256,
    onlyIf: { etagDoesNotMatch: '*' },
    httpMetadata: { contentType },
  })
}

// --- sniffing --------------------------------------------------------------------------------

/** Magic bytes of the formats decoded, and of common ones named in the refusal. */
function sniff(b: Uint8Array): PictureFormat | string | undefined {
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to))
  if (PNG_SIGNATURE.every((x, i) => b[i] === x)) return 'png'
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg'
  if (ascii(0, 4) === 'GIF8') return 'GIF'
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'WebP'
  if (ascii(0, 2) === 'BM') return 'BMP'
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return 'TIFF'
  if (ascii(4, 8) === 'ftyp') return 'HEIF/AVIF'
  return undefined
}

// --- PNG -------------------------------------------------------------------------------------

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** The eight bytes every PNG starts with (PNG spec §5.2). */
const PNG_SIGNATURE: readonly number[] = Object.freeze([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
])
const PNG_SIGNATURE_BYTES = Uint8Array.from(PNG_SIGNATURE)

/** Samples a pixel has, by colour type (PNG spec §11.2.2). */
const PNG_CHANNELS: Readonly<Record<number, number>> = Object.freeze({
  0: 1, // greyscale
  2: 3, // truecolour
  3: 1, // indexed
  4: 2, // greyscale + alpha
  6: 4, // truecolour + alpha
})

/** Bit depths allowed for each colour type (PNG spec table 11.1). */
const PNG_DEPTHS: Readonly<Record<number, readonly number[]>> = Object.freeze({
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
})

interface PngHeader {
  width: number
  height: number
  depth: number
  colorType: number
  interlaced: boolean
}

/** Adam7 pass origins and steps (PNG spec §8.2): [x0, y0, dx, dy]. */
const ADAM7: readonly (readonly [number, number, number, number])[] = Object.freeze([
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
])

/** Input bytes pushed to the bounding inflater at a time: at most ~1032× as much comes out. */
const INFLATE_SLICE = 4096

/** Inflated bytes tolerated past the scanlines (decoders ignore them; more is refused). */
const INFLATE_SLACK = 65536

function decodePngPicture(
  field: PictureField,
  bytes: Uint8Array,
  maxPixels: number,
): Omit<Picture, 'sha256'> {
  const corrupt = (why: string): never => refuse('invalid-image', field, `corrupt PNG: ${why}`)
  const header = readPngHeader(bytes, corrupt)
  checkPixels(field, header.width, header.height, maxPixels)
  if (header.interlaced && header.depth < 8) {
    // fast-png 8.0.0 treats each sub-byte pixel of an Adam7 pass as a whole byte.
    refuse('invalid-image', field, `interlaced PNGs of bit depth ${header.depth} are not supported`)
  }
  const { idat, critical, hasPalette } = readPngChunks(bytes, corrupt)
  if (header.colorType === 3 && !hasPalette) corrupt('an indexed PNG without a PLTE chunk')
  checkInflatedSize(idat, pngDataSize(header), corrupt)
  let png: DecodedPng
  try {
    // Only what the pixels need: fast-png would inflate an iCCP profile without a bound.
    png = decodePng(concat([PNG_SIGNATURE_BYTES, ...critical]), { checkCrc: true })
  } catch (e) {
    return corrupt(e instanceof Error ? e.message : String(e))
  }
  return { width: header.width, height: header.height, ...pngPixels(png, header, corrupt) }
}

/** The IHDR fields (PNG spec §11.2.2), checked: what the pixel limit is applied to. */
function readPngHeader(b: Uint8Array, corrupt: (why: string) => never): PngHeader {
  if (b.length < 33) corrupt('truncated before the end of IHDR')
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
  if (view.getUint32(8) !== 13 || String.fromCharCode(...b.subarray(12, 16)) !== 'IHDR') {
    corrupt('the first chunk is not IHDR')
  }
  const width = view.getUint32(16)
  const height = view.getUint32(20)
  const [depth, colorType, compression, filter, interlace] = b.subarray(24, 29)
  if (!PNG_DEPTHS[colorType]?.includes(depth)) {
    corrupt(`colour type ${colorType} with bit depth ${depth}`)
  }
  if (compression !== 0 || filter !== 0 || interlace > 1) {
    corrupt(`compression ${compression}, filter ${filter}, interlace ${interlace}`)
  }
  if (width > 0x7fffffff || height > 0x7fffffff) corrupt('width or height over 2³¹ − 1')
  return { width, height, depth, colorType, interlaced: interlace === 1 }
}

/** The chunks the pixels are made of; ancillary ones (text, profiles, gamma) are dropped. */
const PNG_PIXEL_CHUNKS: readonly string[] = Object.freeze(['IHDR', 'PLTE', 'tRNS', 'IDAT', 'IEND'])

/**
 * Walks the chunks up to IEND: the IDAT payloads, the chunks of `PNG_PIXEL_CHUNKS` whole (length,
 * type, data, CRC), and whether a PLTE came.
 */
function readPngChunks(
  b: Uint8Array,
  corrupt: (why: string) => never,
): { idat: Uint8Array[]; critical: Uint8Array[]; hasPalette: boolean } {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const idat: Uint8Array[] = []
  const critical: Uint8Array[] = []
  for (let o = 8; ; ) {
    if (o + 12 > b.length) corrupt('truncated (no IEND chunk)')
    const length = view.getUint32(o)
    const type = String.fromCharCode(...b.subarray(o + 4, o + 8))
    if (length > 0x7fffffff || o + 12 + length > b.length) corrupt(`truncated in chunk ${type}`)
    if (PNG_PIXEL_CHUNKS.includes(type)) critical.push(b.subarray(o, o + 12 + length))
    if (type === 'IDAT') idat.push(b.subarray(o + 8, o + 8 + length))
    if (type === 'IEND') break
    o += 12 + length
  }
  if (!idat.length) corrupt('no IDAT chunk')
  const hasPalette = critical.some((c) => String.fromCharCode(...c.subarray(4, 8)) === 'PLTE')
  return { idat, critical, hasPalette }
}

/** Bytes of the filtered scanlines the header promises (PNG spec §7.2, §8.2). */
function pngDataSize(h: PngHeader): number {
  const bits = h.depth * PNG_CHANNELS[h.colorType]
  const lines = (w: number, rows: number) =>
    w && rows ? rows * (1 + Math.ceil((w * bits) / 8)) : 0
  if (!h.interlaced) return lines(h.width, h.height)
  let total = 0
  for (const [x0, y0, dx, dy] of ADAM7) {
    total += lines(Math.ceil((h.width - x0) / dx), Math.ceil((h.height - y0) / dy))
  }
  return total
}

/**
 * Inflates the IDAT stream, counting and discarding, and refuses one that holds less than the
 * header promises (truncated) or more (a bomb, stopped as soon as it passes the size).
 */
function checkInflatedSize(
  idat: readonly Uint8Array[],
  expected: number,
  corrupt: (why: string) => never,
): void {
  let total = 0
  let ended = false
  const inflater = new Unzlib((chunk, final) => {
    total += chunk.length
    ended ||= final
    if (total > expected + INFLATE_SLACK) throw new InflatedTooMuch()
  })
  try {
    for (const data of idat) {
      for (let o = 0; o < data.length; o += INFLATE_SLICE) {
        inflater.push(data.subarray(o, o + INFLATE_SLICE))
      }
    }
    inflater.push(new Uint8Array(0), true)
  } catch (e) {
    if (e instanceof InflatedTooMuch) corrupt(`image data inflates past ${expected} bytes`)
    corrupt(`bad zlib stream (${e instanceof Error ? e.message : String(e)})`)
  }
  if (!ended || total < expected) corrupt(`image data holds ${total} of ${expected} bytes`)
}

class InflatedTooMuch extends Error {}

/** RGB and alpha of a decoded PNG, converted as PIL converts its mode to RGB. */
function pngPixels(
  png: DecodedPng,
  h: PngHeader,
  corrupt: (why: string) => never,
): { rgb: Uint8Array; alpha?: Uint8Array } {
  const n = h.width * h.height
  const channels = PNG_CHANNELS[h.colorType]
  const samples = h.depth < 8 ? unpackSamples(png.data as Uint8Array, h) : png.data
  const to8 = EIGHT_BIT[h.depth]
  const rgb = new Uint8Array(n * 3)
  let alpha: Uint8Array | undefined
  if (h.colorType === 3) {
    const palette = png.palette ?? corrupt('an indexed PNG without a palette')
    const hasAlpha = palette[0]?.length === 4
    alpha = hasAlpha ? new Uint8Array(n) : undefined
    for (let i = 0; i < n; i++) {
      const entry = palette[samples[i]] ?? corrupt(`palette index ${samples[i]} out of range`)
      rgb[3 * i] = entry[0]
      rgb[3 * i + 1] = entry[1]
      rgb[3 * i + 2] = entry[2]
      if (alpha) alpha[i] = entry[3]
    }
    return alpha ? { rgb, alpha } : { rgb }
  }
  const colour = h.colorType === 2 || h.colorType === 6
  if (h.colorType === 4 || h.colorType === 6) alpha = new Uint8Array(n)
  const key = png.transparency // tRNS of gray or truecolour: one fully transparent sample value
  if (key) alpha = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    const s = i * channels
    const r = samples[s]
    const g = colour ? samples[s + 1] : r
    const b = colour ? samples[s + 2] : r
    rgb[3 * i] = to8(r)
    rgb[3 * i + 1] = to8(g)
    rgb[3 * i + 2] = to8(b)
    if (h.colorType === 4 || h.colorType === 6) alpha![i] = to8(samples[s + channels - 1])
    else if (key) {
      const transparent = colour ? r === key[0] && g === key[1] && b === key[2] : r === key[0]
      alpha![i] = transparent ? 0 : 255
    }
  }
  return alpha ? { rgb, alpha } : { rgb }
}

/** A sample of each bit depth to 8 bits: PIL's `L;1`/`L;2`/`L;4` scale up, `;16B` the high byte. */
const EIGHT_BIT: Readonly<Record<number, (v: number) => number>> = Object.freeze({
  1: (v: number) => v * 255,
  2: (v: number) => v * 85,
  4: (v: number) => v * 17,
  8: (v: number) => v,
  16: (v: number) => v >>> 8,
})

/** One sample a byte from rows packed at 1, 2 or 4 bits (each row starts on a byte). */
function unpackSamples(packed: Uint8Array, h: PngHeader): Uint8Array {
  const out = new Uint8Array(h.width * h.height)
  const rowBytes = Math.ceil((h.width * h.depth) / 8)
  const perByte = 8 / h.depth
  const mask = (1 << h.depth) - 1
  for (let y = 0; y < h.height; y++) {
    for (let x = 0; x < h.width; x++) {
      const byte = packed[y * rowBytes + Math.floor(x / perByte)]
      const shift = 8 - h.depth * ((x % perByte) + 1)
      out[y * h.width + x] = (byte >> shift) & mask
    }
  }
  return out
}

// --- JPEG ----------------------------------------------------------------------------------

/** Start-of-frame markers decoded: baseline, extended sequential, progressive (Huffman). */
const JPEG_DECODED_SOF: readonly number[] = Object.freeze([0xc0, 0xc1, 0xc2])

async function decodeJpegPicture(
  field: PictureField,
  bytes: Uint8Array,
  maxPixels: number,
  maxScans: number,
): Promise<Omit<Picture, 'sha256'>> {
  const corrupt = (why: string): never => refuse('invalid-image', field, `corrupt JPEG: ${why}`)
  const frame = readJpegFrame(bytes, corrupt)
  if (!JPEG_DECODED_SOF.includes(frame.marker)) {
    const kind =
      frame.marker === 0xc3 ? 'lossless' : frame.marker & 8 ? 'arithmetic' : 'hierarchical'
    refuse('invalid-image', field, `${kind} JPEGs are not supported (baseline or progressive only)`)
  }
  if (frame.precision !== 8) {
    refuse('invalid-image', field, `${frame.precision}-bit JPEGs are not supported`)
  }
  if (frame.components !== 1 && frame.components !== 3) {
    refuse('invalid-image', field, `JPEGs with ${frame.components} components are not supported`)
  }
  checkPixels(field, frame.width, frame.height, maxPixels)
  // libjpeg only warns at a premature end and pads with gray; PIL refuses such a file.
  const scan = findScan(bytes, frame.next, corrupt)
  if (!hasEndOfImage(bytes, scan)) corrupt('truncated (no end-of-image marker)')
  const scans = countScans(bytes, scan)
  if (scans > maxScans) {
    refuse('invalid-image', field, `a JPEG of ${scans} scans; the limit is ${maxScans}`, {
      limit: maxScans,
    })
  }
  let image: { width: number; height: number; data: Uint8ClampedArray } | null
  const said: string[] = [] // libjpeg's messages: warnings, then the error that exits
  try {
    // A fresh instance each time: libjpeg's errors exit the instance, and its grown memory is
    // garbage once the instance is, instead of staying with the isolate.
    const codec = await initEmscriptenModule(mozjpegDecoder, await mozjpegWasm(), {
      print: () => {},
      printErr: (text: string) => void said.push(text),
    })
    image = codec.decode(bytes, false) // false: EXIF orientation is not applied, as Image.open
  } catch (e) {
    const exit = (e as { message?: unknown } | undefined)?.message
    return corrupt(`libjpeg: ${said.at(-1) ?? (typeof exit === 'string' ? exit : String(e))}`)
  }
  if (!image || image.width !== frame.width || image.height !== frame.height) {
    return corrupt(`the decoder gave ${image ? `${image.width}×${image.height}` : 'nothing'}`)
  }
  const n = image.width * image.height
  const rgb = new Uint8Array(n * 3)
  const rgba = image.data
  for (let i = 0; i < n; i++) {
    rgb[3 * i] = rgba[4 * i]
    rgb[3 * i + 1] = rgba[4 * i + 1]
    rgb[3 * i + 2] = rgba[4 * i + 2]
  }
  return { width: image.width, height: image.height, rgb }
}

/** The decoder's compiled module (`./wasm-module`: a module import in workerd). */
function mozjpegWasm(): Promise<WebAssembly.Module> {
  return codecWasm(
    () => import('@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm'),
    '@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm',
  )
}

interface JpegFrame {
  marker: number
  precision: number
  width: number
  height: number
  components: number
  /** Offset just past the frame header, where `findScan` goes on. */
  next: number
}

/**
 * The first start-of-frame segment (ITU T.81 §B.2.2), found by walking the marker segments (an
 * EXIF thumbnail inside APP1 is skipped whole). Only the header: the pixel limit comes next.
 */
function readJpegFrame(b: Uint8Array, corrupt: (why: string) => never): JpegFrame {
  for (let o = 2; ; ) {
    const segment = nextSegment(b, o, corrupt)
    const { marker, body, end } = segment
    if (marker === 0xda || marker === 0xd9) corrupt('no frame header before the scan')
    const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)
    if (isFrame) {
      if (end - body < 6) corrupt('a frame header shorter than 8 bytes')
      return {
        marker,
        precision: b[body],
        height: (b[body + 1] << 8) | b[body + 2],
        width: (b[body + 3] << 8) | b[body + 4],
        components: b[body + 5],
        next: end,
      }
    }
    o = end
  }
}

/** Offset of the first start-of-scan marker at or after `from`. */
function findScan(b: Uint8Array, from: number, corrupt: (why: string) => never): number {
  for (let o = from; ; ) {
    const { marker, at, end } = nextSegment(b, o, corrupt)
    if (marker === 0xda) return at
    if (marker === 0xd9) corrupt('no scan before the end of the image')
    o = end
  }
}

/**
 * The marker segment at `o` (T.81 §B.1.1): its marker, where its payload starts and where the
 * next segment starts. Markers without a length (SOI, RSTn, TEM) have an empty payload.
 */
function nextSegment(
  b: Uint8Array,
  o: number,
  corrupt: (why: string) => never,
): { marker: number; at: number; body: number; end: number } {
  if (o + 2 > b.length) corrupt('truncated in the headers')
  if (b[o] !== 0xff) corrupt(`no marker at byte ${o}`)
  const at = o
  let p = o + 1
  while (b[p] === 0xff && p < b.length) p++ // fill bytes (§B.1.1.2)
  const marker = b[p++]
  if (marker === undefined) corrupt('truncated in the headers')
  const standalone = marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9) || marker === 0xda
  if (standalone) return { marker, at, body: p, end: p }
  if (p + 2 > b.length) corrupt('truncated in the headers')
  const length = (b[p] << 8) | b[p + 1]
  if (length < 2 || p + length > b.length) corrupt('truncated in a marker segment')
  return { marker, at, body: p + 2, end: p + length }
}

/**
 * Start-of-scan markers from the first scan on. Entropy-coded data stuffs every 0xFF with 0x00
 * (T.81 §B.1.1.5), so 0xFF 0xDA there is a marker (or lies in a table between scans: an overcount
 * that only matters near the limit).
 */
function countScans(b: Uint8Array, from: number): number {
  let n = 0
  for (let i = from; i < b.length - 1; i++) if (b[i] === 0xff && b[i + 1] === 0xda) n++
  return n
}

/**
 * Whether an EOI marker follows the first scan. Entropy-coded data stuffs every 0xFF with 0x00
 * (T.81 §B.1.1.5), so 0xFF 0xD9 there is a real marker; bytes after it are ignored, as libjpeg does.
 */
function hasEndOfImage(b: Uint8Array, from: number): boolean {
  for (let i = b.length - 2; i >= from; i--) if (b[i] === 0xff && b[i + 1] === 0xd9) return true
  return false
}
