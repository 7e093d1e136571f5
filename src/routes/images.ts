/**
 * @module
 * `POST /v1/images` (generate or serve from cache) and `GET /v1/images/{sha256}.png` (the
 * permanent, content-addressed URL of every image).
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { coordinator, storeDeps } from '../bindings'
import { getImage, IMMUTABLE } from '../cache/image-store'
import { imageHeaders, imagePath, matchesEtag, serveImage } from '../cache/serve-image'
import type { EngineProvider } from '../engine-provider'
import { createImages } from '../images/create-images'
import { negotiateImageType } from '../images/negotiate'
import type { RateLimitPolicy } from '../keys/api-keys'
import { apiKeyAuth } from '../middleware/auth'
import { jsonBody } from '../middleware/json-body'
import { rateLimit } from '../middleware/rate-limit'
import { ProblemError } from '../problem'

/** The image routes, mounted at `/v1/images`. */
export function imageRoutes(options: {
  engine: EngineProvider
  maxBodyBytes: number
  rateLimit: RateLimitPolicy
}) {
  const app = new Hono<AppEnv>()

  app.post(
    '/',
    apiKeyAuth({ scope: 'generate' }),
    rateLimit({ defaults: options.rateLimit }),
    jsonBody({ maxBytes: options.maxBodyBytes }),
    async (c) => {
      const type = negotiateImageType(c.req.header('Accept'))
      const result = await createImages(
        {
          engine: await options.engine(c.env),
          store: storeDeps(c.env),
          coordinator: (key) => coordinator(c.env, key),
          charge: c.get('charge'),
        },
        c.get('json'),
        { singleImage: type === 'image/png' },
      )
      const [first] = result.entry.images
      c.set('cacheStatus', result.cached ? 'HIT' : 'MISS')
      c.header('X-Cache', result.cached ? 'HIT' : 'MISS')
      c.header('X-Seed', String(first.seed))
      c.header('X-Request-Key', result.requestKey)
      c.header('Vary', 'Accept')

      if (type === 'application/json') {
        c.header('ETag', `W/"${first.sha256}"`)
        c.header('Cache-Control', 'no-store')
        return c.json({
          images: result.entry.images.map((img) => ({
            url: new URL(imagePath(img.sha256), c.req.url).href,
            seed: img.seed,
            sha256: img.sha256,
            width: img.width,
            height: img.height,
          })),
          model: result.entry.model,
          cached: result.cached,
        })
      }
      const bytes = result.bytes?.[0] ?? (await getImage(storeDeps(c.env), first.sha256))?.body
      if (!bytes) throw new Error(`indexed image ${first.sha256} is missing from R2`)
      c.header('Content-Location', imagePath(first.sha256))
      return c.body(
        bytes as Uint8Array<ArrayBuffer> | ReadableStream,
        200,
        imageHeaders(first.sha256),
      )
    },
  )

  app.get('/:file{[0-9a-f]{64}\\.png}', async (c) => {
    const sha256 = c.req.param('file').slice(0, 64)
    // The URL names the bytes: a client holding this ETag already has them.
    if (matchesEtag(c.req.header('If-None-Match'), sha256)) {
      return c.body(null, 304, { ETag: `"${sha256}"`, 'Cache-Control': IMMUTABLE })
    }
    const res = await serveImage(
      { ...storeDeps(c.env), cache: typeof caches === 'undefined' ? undefined : caches.default },
      sha256,
      new URL(imagePath(sha256), c.req.url).href,
      (p) => c.executionCtx.waitUntil(p),
    )
    if (!res) throw new ProblemError('not-found', { detail: `no image ${sha256}` })
    return res
  })

  return app
}
