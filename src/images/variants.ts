/**
 * @module
 * Output formats and variants of a stored image. The stored PNG stays the one canonical,
 * content-addressed original (its sha256 names it everywhere); a variant is a form derived from
 * it on demand: another format (`output_format`, `/v1/images/<sha256>.webp`), another quality
 * (`output_compression`, `?q=`) or a smaller width (`?w=`, for `srcset`). This module decides
 * what a request may ask for, a variant's validator and its encoding; the table they read
 * (formats, widths, qualities, the canonical query) is `./formats`, kept free of dependencies
 * for the typed client.
 *
 *   const variant = variantFromUrl('webp', { w: '32' }) // 422 `w` if not in VARIANT_WIDTHS
 *   const { bytes } = await encodeVariant(png, variant)
 *
 * Codecs: the jSquash builds of libwebp and MozJPEG and Squoosh's resize (Rust), all WebAssembly
 * that runs unchanged in workerd and Node, loaded as module imports (`./wasm-module`; workerd
 * may not compile bytes). Each is imported and instantiated only on the first request that
 * needs it, so PNG-only traffic never pays for them. Measured with `wrangler deploy --dry-run`:
 * the three add 0.63 MB of WebAssembly and 0.16 MB of JavaScript, 0.23 MB gzipped (4.09 → 4.33
 * MB). AVIF is left out: `@jsquash/avif` 2.1.1's encoder alone is 3.5 MB of WebAssembly (1.1 MB
 * gzipped, libaom), five times the other three together, for a quarter more worker; it encodes
 * 512² in about 0.3 s (Node, speed 6), WebP in 0.05–0.2 s. Adding it is a row in `./formats`
 * and an encoder here.
 *
 * Bounds, against a client busting the cache with endless variants: widths come from the fixed
 * `VARIANT_WIDTHS` (and at most the image's width: upscaling adds nothing), qualities are the
 * integers 0–100, unknown query parameters are ignored and every variant is cached under its
 * canonical URL (`variantQuery`). One image thus has a bounded set of variants, each encoded
 * once per cache.
 *
 * Quality is the encoders' 0–100 scale (100 best), the meaning OpenAI's `output_compression`
 * (default 100 there) and Replicate's `output_quality` give it; absent, a format's
 * `defaultQuality` applies, here and on the OpenAI route alike.
 */
import { decode as decodePng } from 'fast-png'
import { encodePng } from '../pipeline/png'
import { throwFieldErrors, type FieldError } from '../problem'
import {
  ORIGINAL,
  OUTPUT_FORMATS,
  QUALITY_RANGE,
  VARIANT_CODEC_VERSION,
  VARIANT_EXTENSIONS,
  VARIANT_WIDTHS,
  isOriginal,
  type OutputFormat,
  type Variant,
} from './formats'
import { codecWasm } from './wasm-module'

/**
 * The variant a POST body's `output_format` and `output_compression` ask for (both already of
 * the schema's types) and the errors of the pair: compression only applies to lossy formats.
 */
export function outputVariant(
  format: OutputFormat | undefined,
  compression: number | undefined,
): { variant: Variant; errors: FieldError[] } {
  const f = format ?? 'png'
  const { defaultQuality } = OUTPUT_FORMATS[f]
  if (compression !== undefined && defaultQuality === undefined) {
    return {
      variant: ORIGINAL,
      errors: [{ field: 'output_compression', detail: 'applies to webp and jpeg only' }],
    }
  }
  return { variant: withQuality(f, compression), errors: [] }
}

/**
 * The variant a permanent URL names: its extension (a key of `VARIANT_EXTENSIONS`) and the `w`
 * and `q` query parameters. Throws a 422 naming `w` or `q`.
 */
export function variantFromUrl(
  extension: string,
  query: { w?: string | undefined; q?: string | undefined },
): Variant {
  const format = VARIANT_EXTENSIONS[extension]
  if (!format) throw new RangeError(`no output format for .${extension}`)
  const errors: FieldError[] = []
  let width: number | undefined
  if (query.w !== undefined) {
    width = Number(query.w)
    if (!/^\d+$/.test(query.w) || !(VARIANT_WIDTHS as readonly number[]).includes(width)) {
      errors.push({ field: 'w', detail: `must be one of ${VARIANT_WIDTHS.join(', ')}` })
    }
  }
  let quality: number | undefined
  if (query.q !== undefined) {
    quality = Number(query.q)
    if (OUTPUT_FORMATS[format].defaultQuality === undefined) {
      errors.push({ field: 'q', detail: 'applies to webp and jpeg only' })
    } else if (!/^\d+$/.test(query.q) || quality > QUALITY_RANGE.max) {
      errors.push({
        field: 'q',
        detail: `must be an integer between ${QUALITY_RANGE.min} and ${QUALITY_RANGE.max}`,
      })
    }
  }
  if (errors.length) throwFieldErrors(errors)
  return { ...withQuality(format, quality), ...(width === undefined ? {} : { width }) }
}

/**
 * The value of a variant's strong ETag (unquoted): the original's sha256 itself for the
 * original, else the sha256 with the variant's parameters and `VARIANT_CODEC_VERSION`. The
 * encoders are deterministic, so the same tag always names the same bytes.
 */
export function variantTag(sha256: string, v: Variant): string {
  if (isOriginal(v)) return sha256
  const { extension, defaultQuality } = OUTPUT_FORMATS[v.format]
  const quality = v.quality ?? defaultQuality
  return [
    sha256,
    extension,
    ...(v.width === undefined ? [] : [`w${v.width}`]),
    ...(quality === undefined ? [] : [`q${quality}`]),
    `c${VARIANT_CODEC_VERSION}`,
  ].join('-')
}

/** Throws a 422 naming `w` when a variant is wider than its image (upscaling adds nothing). */
export function checkVariantWidth(v: Variant, imageWidth: number): void {
  if (v.width !== undefined && v.width > imageWidth) {
    throwFieldErrors([{ field: 'w', detail: `must be at most the image's width (${imageWidth})` }])
  }
}

/** An encoded variant. */
export interface EncodedVariant {
  bytes: Uint8Array
  contentType: string
  width: number
  height: number
}

/**
 * Encodes a variant from the original PNG: decode, resize (Lanczos-3 in linear light) when a
 * smaller width is asked for, encode. The height keeps the aspect ratio, rounded. Throws a 422
 * naming `w` when the width exceeds the image's.
 */
export async function encodeVariant(png: Uint8Array, v: Variant): Promise<EncodedVariant> {
  const { contentType } = OUTPUT_FORMATS[v.format]
  if (isOriginal(v)) {
    const { width, height } = decodePng(png)
    return { bytes: png, contentType, width, height }
  }
  let image = rgbaOf(png)
  checkVariantWidth(v, image.width)
  if (v.width !== undefined && v.width !== image.width) {
    const height = Math.max(1, Math.round((image.height * v.width) / image.width))
    image = await resize(image, v.width, height)
  }
  const quality = v.quality ?? OUTPUT_FORMATS[v.format].defaultQuality
  const bytes =
    v.format === 'webp'
      ? await encodeWebp(image, quality!)
      : v.format === 'jpeg'
        ? await encodeJpeg(image, quality!)
        : encodePng({ width: image.width, height: image.height, data: rgbOf(image) })
  return { bytes, contentType, width: image.width, height: image.height }
}

/** 8-bit RGBA pixels, the layout every codec here takes. */
interface Rgba {
  width: number
  height: number
  data: Uint8ClampedArray
}

function withQuality(format: OutputFormat, quality: number | undefined): Variant {
  const q = quality ?? OUTPUT_FORMATS[format].defaultQuality
  return q === undefined ? { format } : { format, quality: q }
}

/** The stored PNG's pixels as RGBA (stored images are 8-bit RGB; RGBA and gray are read too). */
function rgbaOf(png: Uint8Array): Rgba {
  const { width, height, data, depth, channels } = decodePng(png)
  if (depth !== 8 || channels < 1 || channels > 4) {
    throw new Error(`a stored image of depth ${depth} and ${channels} channels`)
  }
  const n = width * height
  const out = new Uint8ClampedArray(n * 4)
  for (let i = 0; i < n; i++) {
    const s = i * channels
    const gray = channels < 3
    out[4 * i] = data[s]
    out[4 * i + 1] = gray ? data[s] : data[s + 1]
    out[4 * i + 2] = gray ? data[s] : data[s + 2]
    out[4 * i + 3] = channels === 4 ? data[s + 3] : channels === 2 ? data[s + 1] : 255
  }
  return { width, height, data: out }
}

function rgbOf(image: Rgba): Uint8Array {
  const n = image.width * image.height
  const rgb = new Uint8Array(n * 3)
  for (let i = 0; i < n; i++) {
    rgb[3 * i] = image.data[4 * i]
    rgb[3 * i + 1] = image.data[4 * i + 1]
    rgb[3 * i + 2] = image.data[4 * i + 2]
  }
  return rgb
}

// --- codecs ----------------------------------------------------------------------------------

/** Squoosh's method index of Lanczos-3 (`triangle`, `catrom`, `mitchell`, `lanczos3`). */
const LANCZOS3 = 3

let resizeReady:
  | Promise<typeof import('@jsquash/resize/lib/resize/pkg/squoosh_resize.js')>
  | undefined

/**
 * Resizes RGBA with Squoosh's resize (the `resize` crate). Its wasm-bindgen glue keeps one
 * instance per isolate; its memory grows to the largest resize asked for and stays.
 */
async function resize(image: Rgba, width: number, height: number): Promise<Rgba> {
  resizeReady ??= (async () => {
    const glue = await import('@jsquash/resize/lib/resize/pkg/squoosh_resize.js')
    const module = await codecWasm(
      async () =>
        (await import('@jsquash/resize/lib/resize/pkg/squoosh_resize_bg.wasm')) as unknown as {
          default: WebAssembly.Module
        },
      '@jsquash/resize/lib/resize/pkg/squoosh_resize_bg.wasm',
    )
    await glue.default(module)
    return glue
  })()
  resizeReady.catch(() => (resizeReady = undefined))
  const glue = await resizeReady
  // Opaque pixels: no premultiplication; linear light, so edges are not darkened.
  const data = glue.resize(
    new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength),
    image.width,
    image.height,
    width,
    height,
    LANCZOS3,
    false,
    true,
  )
  return { width, height, data }
}

/**
 * Encodes lossy WebP with libwebp (the SIMD build: workerd and Node 20 both have WebAssembly
 * SIMD). A fresh instance per image, so a large encode's grown memory goes with it.
 */
async function encodeWebp(image: Rgba, quality: number): Promise<Uint8Array> {
  const [{ default: factory }, { defaultOptions }, { initEmscriptenModule }, module] =
    await Promise.all([
      import('@jsquash/webp/codec/enc/webp_enc_simd.js'),
      import('@jsquash/webp/meta.js'),
      import('@jsquash/webp/utils.js'),
      codecWasm(
        () => import('@jsquash/webp/codec/enc/webp_enc_simd.wasm'),
        '@jsquash/webp/codec/enc/webp_enc_simd.wasm',
      ),
    ])
  const codec = await initEmscriptenModule(factory, module, silent)
  const out = codec.encode(image.data, image.width, image.height, { ...defaultOptions, quality })
  if (!out) throw new Error('libwebp refused to encode the image')
  return new Uint8Array(out)
}

/** Encodes progressive JPEG with MozJPEG (4:2:0, trellis quantisation: jSquash's defaults). */
async function encodeJpeg(image: Rgba, quality: number): Promise<Uint8Array> {
  const [{ default: factory }, { defaultOptions }, { initEmscriptenModule }, module] =
    await Promise.all([
      import('@jsquash/jpeg/codec/enc/mozjpeg_enc.js'),
      import('@jsquash/jpeg/meta.js'),
      import('@jsquash/jpeg/utils.js'),
      codecWasm(
        () => import('@jsquash/jpeg/codec/enc/mozjpeg_enc.wasm'),
        '@jsquash/jpeg/codec/enc/mozjpeg_enc.wasm',
      ),
    ])
  const codec = await initEmscriptenModule(factory, module, silent)
  const out = codec.encode(image.data, image.width, image.height, { ...defaultOptions, quality })
  return new Uint8Array(out)
}

/** Emscripten's stdout and stderr: the encoders print nothing we act on. */
const silent = { print: () => {}, printErr: () => {} }
