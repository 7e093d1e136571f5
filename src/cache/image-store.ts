/**
 * @module
 * The image store. Images live in R2 under their content hash (`images/<sha256>.png`, written
 * once); the request key → images index lives in R2 (`index/<requestKey>.json`) and in KV.
 * Writes go R2 images → R2 index → KV, so a failure at any point leaves either nothing indexed
 * or an index whose images exist: an image is never lost and a key never points at wrong bytes.
 */
import type { GeneratedImage } from '../engine/types'
import { sha256Hex } from '../util'

/** One stored image as the index records it. */
export interface StoredImage {
  sha256: string
  seed: number
  width: number
  height: number
}

/** What a request key resolves to. */
export interface IndexEntry {
  requestKey: string
  model: string
  images: StoredImage[]
  createdAt: string
}

/** The bindings the store touches, narrowed so tests can wrap them with faults. */
export interface ImageStoreDeps {
  images: Pick<R2Bucket, 'get' | 'put' | 'head'>
  index: Pick<KVNamespace, 'get' | 'put'>
}

/** `Cache-Control` of an image: content-addressed bytes never change. */
export const IMMUTABLE = 'public, max-age=31536000, immutable'

/** The R2 key of an image. */
export function imageObjectKey(sha256: string): string {
  return `images/${sha256}.png`
}

function indexObjectKey(requestKey: string): string {
  return `index/${requestKey}.json`
}

/** Finds the images of a request key: KV first, then the R2 index (written before KV). */
export async function lookup(deps: ImageStoreDeps, requestKey: string): Promise<IndexEntry | null> {
  try {
    const entry = await deps.index.get<IndexEntry>(requestKey, 'json')
    if (entry) return entry
  } catch (e) {
    console.warn(`image-store: KV read failed for ${requestKey}, falling back to R2`, e)
  }
  const obj = await deps.images.get(indexObjectKey(requestKey))
  return obj ? obj.json<IndexEntry>() : null
}

/**
 * Stores generated images and indexes them under `requestKey`. Resolves once the R2 index is
 * written; a failing KV write is logged, not thrown, because `lookup` falls back to R2.
 */
export async function storeImages(
  deps: ImageStoreDeps,
  requestKey: string,
  model: string,
  generated: readonly GeneratedImage[],
): Promise<IndexEntry> {
  const images: StoredImage[] = []
  for (const img of generated) {
    const sha256 = await sha256Hex(img.bytes)
    await putImageOnce(deps.images, sha256, img.bytes)
    images.push({ sha256, seed: img.seed, width: img.width, height: img.height })
  }
  const entry: IndexEntry = { requestKey, model, images, createdAt: new Date().toISOString() }
  const json = JSON.stringify(entry)
  await deps.images.put(indexObjectKey(requestKey), json, {
    httpMetadata: { contentType: 'application/json' },
  })
  try {
    await deps.index.put(requestKey, json)
  } catch (e) {
    console.warn(`image-store: KV index write failed for ${requestKey}; R2 index serves it`, e)
  }
  return entry
}

/** Reads an image by its content hash. */
export function getImage(
  deps: Pick<ImageStoreDeps, 'images'>,
  sha256: string,
): Promise<R2ObjectBody | null> {
  return deps.images.get(imageObjectKey(sha256))
}

/**
 * Writes an image unless it exists. The key is the content hash, so an existing object already
 * holds these bytes; R2 verifies the upload against `sha256`.
 */
async function putImageOnce(
  bucket: ImageStoreDeps['images'],
  sha256: string,
  bytes: Uint8Array,
): Promise<void> {
  const key = imageObjectKey(sha256)
  if (await bucket.head(key)) return
  await bucket.put(key, bytes, {
    sha256,
    onlyIf: { etagDoesNotMatch: '*' },
    httpMetadata: { contentType: 'image/png', cacheControl: IMMUTABLE },
  })
}
