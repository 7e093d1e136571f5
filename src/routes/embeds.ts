/**
 * @module
 * `POST /v1/embeds` (mint a signed embed URL; scope `embed`; generates nothing) and
 * `GET /v1/embeds/{payload}.{mac}.png` (public: verify, then serve the image, generating it on
 * the first view against the embedding key's quota). See `src/embeds/embeds.ts`.
 */
import { Hono } from 'hono'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env'
import { imageDeps, keyDeps, storeDeps } from '../bindings'
import { imageHeaders, imagePath, matchesEtag, serveImage } from '../cache/serve-image'
import {
  embedCacheControl,
  embedImage,
  mintEmbed,
  openEmbed,
  type OpenedEmbed,
} from '../embeds/embeds'
import { parseEmbedRequest } from '../embeds/schema'
import type { EngineProvider } from '../engine/provider'
import type { RateLimitPolicy } from '../keys/api-keys'
import { apiKeyAuth } from '../middleware/auth'
import { jsonBody } from '../middleware/json-body'
import { rateLimit } from '../middleware/rate-limit'
import { publicBase } from '../public-url'

/** The embed routes, mounted at `/v1/embeds`. */
export function embedRoutes(options: {
  engine: EngineProvider
  maxBodyBytes: number
  rateLimit: RateLimitPolicy
}) {
  const app = new Hono<AppEnv>()

  app.post(
    '/',
    apiKeyAuth({ scope: 'embed' }),
    jsonBody({ maxBytes: options.maxBodyBytes }),
    async (c) => {
      const body = parseEmbedRequest(c.get('json'))
      const minted = await mintEmbed(
        { engine: await options.engine(c.env), pictures: { images: c.env.IMAGES } },
        c.get('apiKey'),
        body,
        publicBase(c),
      )
      c.header('Cache-Control', 'no-store')
      return c.json(minted)
    },
  )

  app.get(
    '/:file{.+\\.png}',
    embedAccess(),
    // The verified key stands in for an Authorization header: its quota pays for a miss.
    rateLimit({ defaults: options.rateLimit }),
    async (c) => {
      const opened = c.get('embed')
      const got = await embedImage(
        {
          ...(await imageDeps(c.env, options.engine, c.get('charge'), c.get('apiKey').id)),
          read: async (sha256) =>
            (
              await serveImage(
                {
                  ...storeDeps(c.env),
                  cache: typeof caches === 'undefined' ? undefined : caches.default,
                },
                sha256,
                new URL(imagePath(sha256), c.req.url).href,
                (p) => c.executionCtx.waitUntil(p),
              )
            )?.body ?? null,
        },
        opened,
        // No ETag on a restricted view, so no 304 either: it would confirm a guessed address.
        (sha256) => !opened.payload.o && matchesEtag(c.req.header('If-None-Match'), sha256),
      )
      c.set('cacheStatus', got.cached ? 'HIT' : 'MISS')
      // An origin restriction limits which pages may show the URL: it must not hand out the
      // image's content address (ETag, Content-Location), whose permanent URL any page can show.
      const { ETag: etag, ...image } = imageHeaders(got.image.sha256)
      const restricted = Boolean(opened.payload.o)
      const headers = {
        ...image,
        ...(restricted
          ? {}
          : {
              ETag: etag,
              'Content-Location': imagePath(got.image.sha256),
              'X-Request-Key': got.requestKey,
            }),
        'Cache-Control': embedCacheControl(opened),
        // Pages that require CORP (COEP: require-corp) may embed it too.
        'Cross-Origin-Resource-Policy': 'cross-origin',
        'X-Cache': got.cached ? 'HIT' : 'MISS',
      }
      if (!got.body) return c.body(null, 304, headers)
      return c.body(got.body as Uint8Array<ArrayBuffer> | ReadableStream, 200, headers)
    },
  )

  return app
}

/**
 * Verifies the embed token of the path, sets `embed` and `apiKey` (for `rateLimit`), and adds
 * the CORS headers the verified payload allows to whatever the route answers.
 */
function embedAccess() {
  return createMiddleware<AppEnv & { Variables: { embed: OpenedEmbed } }>(
    async function embedAccess(c, next) {
      const file = c.req.param('file') ?? ''
      const opened = await openEmbed(keyDeps(c.env), file.slice(0, -'.png'.length), {
        origin: c.req.header('Origin'),
        referer: c.req.header('Referer'),
      })
      c.set('embed', opened)
      c.set('apiKey', opened.key)
      await next()
      if (opened.allowOrigin) c.res.headers.set('Access-Control-Allow-Origin', opened.allowOrigin)
      // A restricted answer depended on both headers: no cache may hand it to another page.
      if (opened.allowOrigin !== '*') c.res.headers.append('Vary', 'Origin, Referer')
    },
  )
}
