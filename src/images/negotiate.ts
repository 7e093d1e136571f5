/**
 * @module
 * `Accept` negotiation for POST /v1/images: image bytes (the default; PNG, or the body's
 * `output_format`) or a JSON description.
 */
import { ProblemError } from '../problem'
import { OUTPUT_FORMATS, type OutputFormat } from './formats'

/** The representations POST /v1/images can return, preferred first. */
export const IMAGE_MEDIA_TYPES = Object.freeze(['image/png', 'application/json'] as const)

/** One of `IMAGE_MEDIA_TYPES`, or the media type of another `output_format`. */
export type ImageMediaType = (typeof IMAGE_MEDIA_TYPES)[number] | `image/${string}`

/**
 * Picks the representation for an `Accept` header (RFC 9110 §12.5.1: most specific matching
 * range gives the q-value; ties go to the image). `image` is the media type of the image the
 * body asks for (`requestedMediaType`). Throws 406 `not-acceptable` when neither is acceptable.
 */
export function negotiateImageType(
  accept: string | undefined,
  image: `image/${string}` = 'image/png',
): ImageMediaType {
  if (!accept?.trim()) return image
  const candidates = [image, 'application/json'] as const
  const ranges = accept.split(',').map((part) => {
    const [range, ...params] = part.trim().toLowerCase().split(';')
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    return { range: range.trim(), q: q ? Number(q.slice(2)) : 1 }
  })
  let best: { type: ImageMediaType; q: number } | undefined
  for (const type of candidates) {
    const q = qualityOf(type, ranges)
    if (q > 0 && (!best || q > best.q)) best = { type, q }
  }
  if (!best) {
    throw new ProblemError('not-acceptable', {
      detail: `supported: ${[...candidates, 'text/event-stream'].join(', ')}`,
    })
  }
  return best.type
}

function qualityOf(type: string, ranges: { range: string; q: number }[]): number {
  const [major] = type.split('/')
  const match =
    ranges.find((r) => r.range === type) ??
    ranges.find((r) => r.range === `${major}/*`) ??
    ranges.find((r) => r.range === '*/*')
  return match && Number.isFinite(match.q) ? match.q : 0
}

/**
 * The media type of the image a POST body asks for: its `output_format`'s, PNG when it has none
 * or an unknown one (validation reports that afterwards).
 */
export function requestedMediaType(body: unknown): `image/${string}` {
  const format = (body as { output_format?: unknown } | null)?.output_format
  return typeof format === 'string' && Object.hasOwn(OUTPUT_FORMATS, format)
    ? OUTPUT_FORMATS[format as OutputFormat].contentType
    : 'image/png'
}
