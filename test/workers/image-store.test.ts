/**
 * The image store's write order, with faults injected by wrapping the bindings handed to the
 * domain functions. Images come from the real engine.
 */
import { env } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  imageObjectKey,
  lookup,
  storeImages,
  type ImageStoreDeps,
} from '../../src/cache/image-store'
import { installedEngine } from '../../src/engine/provider'
import type { GeneratedImage } from '../../src/engine/types'
import { sha256Hex } from '../../src/util'

let images: GeneratedImage[]

beforeAll(async () => {
  const engine = await installedEngine(env)
  const m = engine.models()[0]
  images = await engine.generate({
    model: m.id,
    prompt: 'store me',
    negativePrompt: '',
    seed: 5,
    steps: 2,
    guidanceScale: m.defaults.guidance_scale,
    width: m.defaults.width,
    height: m.defaults.height,
    scheduler: m.defaults.scheduler,
    n: 1,
    truncate: false,
    options: {},
  })
})

const real = (): ImageStoreDeps => ({ images: env.IMAGES, index: env.INDEX })

describe('storeImages', () => {
  it('loses nothing when the KV write fails after the R2 writes', async () => {
    const failingKv: ImageStoreDeps['index'] = {
      get: env.INDEX.get.bind(env.INDEX) as ImageStoreDeps['index']['get'],
      put: async () => {
        throw new Error('injected KV outage')
      },
    }
    const key = 'a'.repeat(64)
    const entry = await storeImages({ images: env.IMAGES, index: failingKv }, key, 'm', images)
    const sha = await sha256Hex(images[0].bytes)
    expect(entry.images[0].sha256).toBe(sha)

    expect(await env.INDEX.get(key)).toBe(null) // the fault really hit KV
    const found = await lookup(real(), key) // …and the R2 index still answers
    expect(found?.images.map((i) => i.sha256)).toEqual([sha])
    const obj = await env.IMAGES.get(imageObjectKey(sha))
    expect(new Uint8Array(await obj!.arrayBuffer())).toEqual(images[0].bytes)
  })

  it('indexes nothing when the image write fails', async () => {
    const failingR2: ImageStoreDeps['images'] = {
      head: env.IMAGES.head.bind(env.IMAGES),
      get: env.IMAGES.get.bind(env.IMAGES),
      put: async () => {
        throw new Error('injected R2 outage')
      },
    }
    const key = 'b'.repeat(64)
    await expect(
      storeImages({ images: failingR2, index: env.INDEX }, key, 'm', images),
    ).rejects.toThrow('injected R2 outage')
    expect(await lookup(real(), key)).toBe(null)
  })

  it('writes each image once under its content hash', async () => {
    const sha = await sha256Hex(images[0].bytes)
    await storeImages(real(), 'c'.repeat(64), 'm', images)
    const first = await env.IMAGES.head(imageObjectKey(sha))
    await storeImages(real(), 'd'.repeat(64), 'm', images)
    const second = await env.IMAGES.head(imageObjectKey(sha))
    expect(second?.uploaded.getTime()).toBe(first?.uploaded.getTime())
    expect(second?.etag).toBe(first?.etag)
    // The put itself is create-only too, should two writers pass the existence check at once.
    const overwrite = await env.IMAGES.put(imageObjectKey(sha), new Uint8Array([1, 2, 3]), {
      onlyIf: { etagDoesNotMatch: '*' },
    })
    expect(overwrite).toBe(null)
    expect((await env.IMAGES.head(imageObjectKey(sha)))?.etag).toBe(first?.etag)
  })
})
