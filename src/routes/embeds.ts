/**
 * @module
 * `POST /v1/embeds` (mint a signed embed URL; scope `embed`; generates nothing) and
 * `GET /v1/embeds/{payload}.{mac}.png` (public: verify, then serve the image, generating it on
 * the first view against the embedding key's quota), and `.webp` / `.jpg` / `?w=` / `?q=`
 * variants of it as on the permanent URL. See `src/embeds/embeds.ts`.
 */
import { Hono, type Context } from 'hono'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env'
import { imageDeps, keyDeps, serveDeps } from '../bindings'
import { imageHeaders, imagePath, matchesEtag, serveVariant } from '../cache/serve-image'
import {
  embedCacheControl,
  embedImage,
  mintEmbed,
  openEmbed,
  type OpenedEmbed,
} from '../embeds/embeds'
import { parseEmbedRequest } from '../embeds/schema'
import { checkVariantWidth, variantFromUrl, variantTag } from '../images/variants'
import type { EngineProvider } from '../engine/provider'
import type { RateLimitPolicy } from '../keys/api-keys'
import { apiKeyAuth } from '../middleware/auth'
import { jsonBody } from '../middleware/json-body'
import { rateLimit } from '../middleware/rate-limit'
import { publicBase } from '../public-url'

/** The app's environment once `embedAccess` has verified the token. */
type EmbedEnv = AppEnv & { Variables: { embed: OpenedEmbed } }

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

  const view = async (c: Context<EmbedEnv>) => {
    const opened = c.get('embed')
    const file = c.req.param('file') ?? ''
    const variant = variantFromUrl(file.slice(file.lastIndexOf('.') + 1), {
      w: c.req.query('w'),
      q: c.req.query('q'),
    })
    // Before the first view generates anything: the payload knows the image's width.
    checkVariantWidth(variant, Number(opened.payload.p.width))
    const got = await embedImage(
      {
        ...(await imageDeps(c.env, options.engine, c.get('charge'), c.get('apiKey').id)),
        read: async (sha256, original) =>
          (
            await serveVariant(
              serveDeps(c.env),
              sha256,
              variant,
              c.req.url,
              (p) => c.executionCtx.waitUntil(p),
              original,
            )
          )?.body ?? null,
      },
      opened,
      // No ETag on a restricted view, so no 304 either: it would confirm a guessed address.
      (sha256) =>
        !opened.payload.o &&
        matchesEtag(c.req.header('If-None-Match'), variantTag(sha256, variant)),
    )
    c.set('cacheStatus', got.cached ? 'HIT' : 'MISS')
    // An origin restriction limits which pages may show the URL: it must not hand out the
    // image's content address (ETag, Content-Location), whose permanent URL any page can show.
    const { ETag: etag, ...image } = imageHeaders(got.image.sha256, variant)
    const restricted = Boolean(opened.payload.o)
    const headers = {
      ...image,
      ...(restricted
        ? {}
        : {
            ETag: etag,
            'Content-Location': imagePath(got.image.sha256, variant),
            'X-Request-Key': got.requestKey,
          }),
      'Cache-Control': embedCacheControl(opened),
      // Pages that require CORP (COEP: require-corp) may embed it too.
      'Cross-Origin-Resource-Policy': 'cross-origin',
      'X-Cache': got.cached ? 'HIT' : 'MISS',
    }
    if (!got.body) return c.body(null, 304, headers)
    return c.body(got.body as Uint8Array<ArrayBuffer> | ReadableStream, 200, headers)
  }
  // The verified key stands in for an Authorization header: its quota pays for a miss.
  const viewing = [embedAccess(), rateLimit({ defaults: options.rateLimit })] as const
  app.get('/:file{.+\\.png}', ...viewing, view)
  app.get('/:file{.+\\.(?:webp|jpg|jpeg)}', ...viewing, view)

  return app
}

/**
 * Verifies the embed token of the path, sets `embed` and `apiKey` (for `rateLimit`), and adds
 * the CORS headers the verified payload allows to whatever the route answers.
 */
function embedAccess() {
  return createMiddleware<EmbedEnv>(async function embedAccess(c, next) {
    const file = c.req.param('file') ?? ''
    const opened = await openEmbed(keyDeps(c.env), file.slice(0, file.lastIndexOf('.')), {
      origin: c.req.header('Origin'),
      referer: c.req.header('Referer'),
    })
    c.set('embed', opened)
    c.set('apiKey', opened.key)
    c.set('keyState', opened.state)
    await next()
    if (opened.allowOrigin) c.res.headers.set('Access-Control-Allow-Origin', opened.allowOrigin)
    // A restricted answer depended on both headers: no cache may hand it to another page.
    if (opened.allowOrigin !== '*') c.res.headers.append('Vary', 'Origin, Referer')
  })
}
