/**
 * @module
 * Serving `GET /v1/images/{sha256}.png`: the Cache API in front (optional accelerator), R2
 * behind it. Content-addressed, so every response is immutable.
 */
import { getImage, IMMUTABLE, type ImageStoreDeps } from './image-store'

/** The permanent URL path of an image. */
export function imagePath(sha256: string): string {
  return `/v1/images/${sha256}.png`
}

/** Headers every image response carries. */
export function imageHeaders(sha256: string): Record<string, string> {
  return { 'Content-Type': 'image/png', ETag: `"${sha256}"`, 'Cache-Control': IMMUTABLE }
}

/** Whether an `If-None-Match` header matches the image's strong ETag (`*`, weak forms too). */
export function matchesEtag(ifNoneMatch: string | undefined, sha256: string): boolean {
  if (!ifNoneMatch) return false
  return ifNoneMatch
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === '*' || t === `"${sha256}"`)
}

/**
 * Returns the image's response, or null when no such image exists. A Cache API miss reads R2
 * and fills the cache through `defer` (the caller's `waitUntil`).
 */
export async function serveImage(
  deps: Pick<ImageStoreDeps, 'images'> & { cache?: Pick<Cache, 'match' | 'put'> },
  sha256: string,
  cacheUrl: string,
  defer: (p: Promise<unknown>) => void,
): Promise<Response | null> {
  const cached = await deps.cache?.match(cacheUrl)
  if (cached) return cached
  const obj = await getImage(deps, sha256)
  if (!obj) return null
  const res = new Response(obj.body, { headers: imageHeaders(sha256) })
  if (deps.cache) defer(deps.cache.put(cacheUrl, res.clone()))
  return res
}
