/**
 * @module
 * `<picture>` markup for static pages: a WebP `<source>` and an `<img>` fallback, each with a
 * `srcset` of the variant widths up to the image's own, so the browser fetches the smallest
 * variant that fills the slot. Used by POST /v1/embeds (`picture`) and `tti prebuild --html`;
 * without dependencies beyond the format table, so the CLI and the client share it.
 *
 * @example
 * pictureHtml({ url: (v) => `/v1/images/${sha}.${ext(v)}…`, width: 64, height: 64, alt: 'a circle' })
 * // <picture><source type="image/webp" srcset="….webp?w=16 16w, …, ….webp 64w" sizes="…">
 * //   <img src="….png" srcset="….png?w=16 16w, …" width="64" height="64" alt="a circle" …></picture>
 */
import { OUTPUT_FORMATS, VARIANT_WIDTHS, type OutputFormat, type Variant } from '../images/formats'

/** The `srcset` widths of an image `width` pixels wide: the ladder below it, then its own. */
export function srcsetWidths(width: number): number[] {
  return [...VARIANT_WIDTHS.filter((w) => w < width), width]
}

/** What `pictureHtml` needs. */
export interface PictureMarkup {
  /** The URL of a variant (the image's own width when `width` is absent). */
  url: (variant: Variant) => string
  width: number
  height: number
  alt: string
  /** The `<img>` fallback's format (`png` unless given; `webp` falls back to `png`). */
  fallback?: OutputFormat
  /** Encoder quality of the lossy variants; the format's default when absent. */
  quality?: number
}

/**
 * A `<picture>` element: a WebP `<source>` and an `<img>` in `fallback`, both with `srcset`
 * widths and `sizes` that never stretch the image past its own width; `width` and `height` on
 * the `<img>` reserve its box before it loads.
 */
export function pictureHtml(m: PictureMarkup): string {
  const fallback = m.fallback && m.fallback !== 'webp' ? m.fallback : 'png'
  const srcset = (format: OutputFormat) =>
    srcsetWidths(m.width)
      .map((w) => `${m.url(variantOf(format, w, m))} ${w}w`)
      .join(', ')
  const sizes = `(max-width: ${m.width}px) 100vw, ${m.width}px`
  return [
    '<picture>',
    `<source type="${OUTPUT_FORMATS.webp.contentType}" srcset="${escapeHtml(srcset('webp'))}" sizes="${sizes}">`,
    `<img src="${escapeHtml(m.url(variantOf(fallback, m.width, m)))}" srcset="${escapeHtml(srcset(fallback))}" sizes="${sizes}" width="${m.width}" height="${m.height}" alt="${escapeHtml(m.alt)}" loading="lazy" decoding="async">`,
    '</picture>',
  ].join('')
}

/** The variant at `width` (none for the image's own width: its canonical URL). */
function variantOf(format: OutputFormat, width: number, m: PictureMarkup): Variant {
  const lossy = OUTPUT_FORMATS[format].defaultQuality !== undefined
  return {
    format,
    ...(width === m.width ? {} : { width }),
    ...(lossy && m.quality !== undefined ? { quality: m.quality } : {}),
  }
}

/** Escapes text for an HTML attribute or element body. */
export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!,
  )
}
