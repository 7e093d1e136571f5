/**
 * @module
 * POST /v1/batch for static site generators: a list of image requests in, a map of permanent
 * image URLs out. Items run one after another through `createImages` (the isolate runs the model
 * on one thread, so parallel misses would only queue), each charged like POST /v1/images: a
 * cache hit is free, a miss costs one image. An item that fails (its parameters, the quota, the
 * generation) gets its problem in `errors` and the rest still run, so a rebuild after a 429
 * picks up where the last one stopped, at no cost for what is already stored.
 *
 * @example
 * await createBatch(deps, [{ id: 'hero', prompt: 'a red circle', seed: 1 }], 'https://tti.example.com')
 * // { images: { hero: { url, sha256, seed, width, height, cached } }, errors: {} }
 */
import { imagePath } from '../cache/serve-image'
import { createImages, type CreateImagesDeps } from './create-images'
import { isOriginal } from './formats'
import { ProblemError } from '../problem'
import { batchId, type BatchRequestBody } from '../embeds/schema'

/** One image of a batch answer. */
export interface BatchImage {
  /** The permanent URL in the item's `output_format` (the PNG's by default). */
  url: string
  /** The original PNG's permanent URL, when `url` is another format's. */
  png_url?: string
  sha256: string
  seed: number
  width: number
  height: number
  /** Whether it was stored before this batch needed it. */
  cached: boolean
}

/** The answer of POST /v1/batch: images and problems, each keyed by item id (or index). */
export interface BatchResult {
  images: Record<string, BatchImage>
  errors: Record<string, Record<string, unknown>>
}

/** Runs every item in order; `origin` is where the permanent URLs point. */
export async function createBatch(
  deps: CreateImagesDeps,
  items: BatchRequestBody['items'],
  origin: string,
): Promise<BatchResult> {
  const out: BatchResult = { images: {}, errors: {} }
  for (const [index, item] of items.entries()) {
    const id = batchId(item, index)
    const { id: _id, ...body } = item
    try {
      const result = await createImages(deps, body, { singleImage: true })
      const [img] = result.entry.images
      out.images[id] = {
        url: new URL(imagePath(img.sha256, result.output), origin).href,
        ...(isOriginal(result.output)
          ? {}
          : { png_url: new URL(imagePath(img.sha256), origin).href }),
        sha256: img.sha256,
        seed: img.seed,
        width: img.width,
        height: img.height,
        cached: result.cached,
      }
    } catch (e) {
      if (!(e instanceof ProblemError)) throw e
      out.errors[id] = e.body()
    }
  }
  return out
}
