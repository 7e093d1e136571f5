/**
 * @module
 * The output formats and the variants of a stored image as data: the format table, the widths
 * and qualities a variant may have, and a variant's one canonical URL. No dependencies,
 * so the typed client builds the same URLs the server serves. Validation and encoding are in
 * `./variants` (see there for why these bounds).
 */

/** The output formats: media type, path extension, default quality (lossy formats only). */
export const OUTPUT_FORMATS = Object.freeze({
  png: Object.freeze({ contentType: 'image/png', extension: 'png', defaultQuality: undefined }),
  webp: Object.freeze({ contentType: 'image/webp', extension: 'webp', defaultQuality: 80 }),
  jpeg: Object.freeze({ contentType: 'image/jpeg', extension: 'jpg', defaultQuality: 85 }),
} as const)

/** A key of `OUTPUT_FORMATS`: what `output_format` takes. */
export type OutputFormat = keyof typeof OUTPUT_FORMATS

/** The `output_format` values, the default (`png`) first. */
export const OUTPUT_FORMAT_NAMES = Object.freeze(['png', 'webp', 'jpeg'] as const)

/** Path extensions of the permanent URL and their formats (`.jpeg` is `.jpg`'s alias). */
export const VARIANT_EXTENSIONS: Readonly<Record<string, OutputFormat>> = Object.freeze({
  png: 'png',
  webp: 'webp',
  jpg: 'jpeg',
  jpeg: 'jpeg',
})

/** The widths `?w=` may ask for (a `srcset` ladder); at most the image's own width. */
export const VARIANT_WIDTHS = Object.freeze([
  16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 640, 768, 1024, 1280, 1536, 2048,
] as const)

/** Lowest and highest quality (`output_compression`, `?q=`). */
export const QUALITY_RANGE = Object.freeze({ min: 0, max: 100 } as const)

/**
 * Version of the encoders and their options. It is part of every variant's ETag, so a codec
 * upgrade (whose bytes may differ) never reuses a validator; bump it with any codec pin.
 */
export const VARIANT_CODEC_VERSION = 1

/** A derived form of a stored image; `{ format: 'png' }` alone is the original itself. */
export interface Variant {
  format: OutputFormat
  /** Encoder quality 0–100 (lossy formats only; their default when absent). */
  quality?: number
  /** Target width in pixels (one of `VARIANT_WIDTHS`); the original's when absent. */
  width?: number
}

/** The stored original. */
export const ORIGINAL: Readonly<Variant> = Object.freeze({ format: 'png' })

/** Whether a variant is the stored original, byte for byte. */
export function isOriginal(v: Variant): boolean {
  return v.format === 'png' && v.width === undefined
}

/**
 * The canonical query of a variant's URL (`?w=32&q=60`, empty for the defaults): one spelling
 * per variant, so equal variants share one cache entry.
 */
export function variantQuery(v: Variant): string {
  const params = new URLSearchParams()
  if (v.width !== undefined) params.set('w', String(v.width))
  const { defaultQuality } = OUTPUT_FORMATS[v.format]
  if (v.quality !== undefined && v.quality !== defaultQuality) params.set('q', String(v.quality))
  const query = params.toString()
  return query ? `?${query}` : ''
}

/** The permanent URL path of an image, or of one of its variants (canonical spelling). */
export function imagePath(sha256: string, variant: Variant = ORIGINAL): string {
  return `/v1/images/${sha256}.${OUTPUT_FORMATS[variant.format].extension}${variantQuery(variant)}`
}
