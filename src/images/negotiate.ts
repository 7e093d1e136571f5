/**
 * @module
 * `Accept` negotiation for POST /v1/images: PNG bytes (the default) or a JSON description.
 */
import { ProblemError } from '../problem'

/** The representations POST /v1/images can return, preferred first. */
export const IMAGE_MEDIA_TYPES = Object.freeze(['image/png', 'application/json'] as const)

/** One of `IMAGE_MEDIA_TYPES`. */
export type ImageMediaType = (typeof IMAGE_MEDIA_TYPES)[number]

/**
 * Picks the representation for an `Accept` header (RFC 9110 §12.5.1: most specific matching
 * range gives the q-value; ties go to PNG). Throws 406 `not-acceptable` when neither is.
 */
export function negotiateImageType(accept: string | undefined): ImageMediaType {
  if (!accept?.trim()) return 'image/png'
  const ranges = accept.split(',').map((part) => {
    const [range, ...params] = part.trim().toLowerCase().split(';')
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    return { range: range.trim(), q: q ? Number(q.slice(2)) : 1 }
  })
  let best: { type: ImageMediaType; q: number } | undefined
  for (const type of IMAGE_MEDIA_TYPES) {
    const q = qualityOf(type, ranges)
    if (q > 0 && (!best || q > best.q)) best = { type, q }
  }
  if (!best) {
    throw new ProblemError('not-acceptable', {
      detail: `supported: ${[...IMAGE_MEDIA_TYPES, 'text/event-stream'].join(', ')}`,
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
