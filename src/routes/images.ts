/**
 * @module
 * `POST /v1/images` (generate or serve from cache; with `Accept: text/event-stream` it streams
 * progress, with `Prefer: respond-async` it answers 202 and a durable job to poll, or to hear of
 * through `webhook_url`) and
 * `GET /v1/images/{sha256}.png` (the permanent, content-addressed URL of every image) with its
 * variants `.webp`, `.jpg` / `.jpeg`, `?w=` and `?q=` (`src/images/variants.ts`).
 */
import { Hono, type Context } from 'hono'
import type { AppEnv } from '../app-env'
import { coordinator, imageDeps, serveDeps, storeDeps } from '../bindings'
import { getImage, IMMUTABLE } from '../cache/image-store'
import {
  imageHeaders,
  imagePath,
  matchesEtag,
  serveVariant,
  type ServeImageDeps,
} from '../cache/serve-image'
import type { EngineProvider } from '../engine/provider'
import { acceptImages, createImages } from '../images/create-images'
import { jobPath } from '../images/jobs'
import {
  describeImages,
  ProgressQueue,
  startImages,
  streamImages,
  wantsEventStream,
  type StartedImages,
} from '../images/progress'
import { isOriginal } from '../images/formats'
import { negotiateImageType, requestedMediaType } from '../images/negotiate'
import { variantFromUrl, variantTag } from '../images/variants'
import type { RateLimitPolicy } from '../keys/api-keys'
import { apiKeyAuth } from '../middleware/auth'
import { imageBody } from '../middleware/image-body'
import { PICTURE_LIMITS } from '../images/pictures'
import { PICTURE_FIELDS } from '../images/request-pictures'
import { PROMPT_WARNINGS_HEADER, requestWarnings, warningsHeader } from '../images/prompt-warnings'
import { ImageRequest } from '../images/schema'
import { rateLimit } from '../middleware/rate-limit'
import { ProblemError } from '../problem'
import { publicBase } from '../public-url'
import { allowsPrivateTargets } from '../webhooks/webhooks'

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
    imageBody({
      maxBytes: options.maxBodyBytes,
      maxPictureBytes: PICTURE_LIMITS.maxBytes,
      pictures: PICTURE_FIELDS,
      schema: ImageRequest,
    }),
    async (c) => {
      const deps = await imageDeps(c.env, options.engine, c.get('charge'), c.get('apiKey').id)
      c.header('Vary', 'Accept, Prefer')
      // Words the model never saw: said on every answer, computed apart from the key and image.
      const warnings = warningsHeader(requestWarnings(deps.engine, c.get('json')))
      if (warnings) c.header(PROMPT_WARNINGS_HEADER, warnings)
      // Event stream first (it is already asynchronous), then respond-async, then one answer.
      if (wantsEventStream(c.req.header('Accept'))) {
        const progress = new ProgressQueue()
        const started = await startImages(deps, c.get('json'), progress.push, c.get('apiKey').id)
        startedHeaders(c, started)
        return streamImages(c, started, progress)
      }
      if (prefersRespondAsync(c.req.header('Prefer'))) {
        const accepted = await acceptImages(
          {
            ...deps,
            coordinator: (key) => coordinator(c.env, key),
            caller: {
              keyId: c.get('apiKey').id,
              policy: c.get('quotaPolicy'),
              hasWebhookSecret: Boolean(c.get('apiKey').webhook_secret),
            },
            allowPrivateWebhooks: allowsPrivateTargets(c.env),
            sendWebhook: (m) => c.env.WEBHOOKS.send(m),
            base: publicBase(c),
          },
          c.get('json'),
        )
        const cached = accepted.state === 'ready'
        c.set('cacheStatus', cached ? 'HIT' : 'MISS')
        c.header('X-Cache', cached ? 'HIT' : 'MISS')
        c.header('Cache-Control', 'no-store')
        // RFC 7240 lets a server ignore the preference: a hit is answered at once.
        if (accepted.state === 'ready') {
          const { entry, output, requestKey } = accepted.result
          c.header('X-Seed', String(entry.images[0].seed))
          c.header('X-Request-Key', requestKey)
          return c.json(describeImages(entry, true, publicBase(c), output))
        }
        c.header('X-Seed', String(accepted.seed))
        c.header('X-Request-Key', accepted.requestKey)
        c.header('Location', jobPath(accepted.requestKey))
        c.header('Preference-Applied', 'respond-async')
        c.header('Retry-After', '1')
        return c.json({ id: accepted.requestKey, status: accepted.status, progress: null }, 202)
      }

      const type = negotiateImageType(c.req.header('Accept'), requestedMediaType(c.get('json')))
      const result = await createImages(deps, c.get('json'), {
        singleImage: type !== 'application/json',
        caller: c.get('apiKey').id,
      })
      const [first] = result.entry.images
      c.set('cacheStatus', result.cached ? 'HIT' : 'MISS')
      c.header('X-Cache', result.cached ? 'HIT' : 'MISS')
      c.header('X-Seed', String(first.seed))
      c.header('X-Request-Key', result.requestKey)

      if (type === 'application/json') {
        c.header('ETag', `W/"${first.sha256}"`)
        c.header('Cache-Control', 'no-store')
        return c.json(describeImages(result.entry, result.cached, publicBase(c), result.output))
      }
      if (isOriginal(result.output)) {
        const bytes = result.bytes?.[0] ?? (await getImage(storeDeps(c.env), first.sha256))?.body
        if (!bytes) throw new Error(`indexed image ${first.sha256} is missing from R2`)
        c.header('Content-Location', imagePath(first.sha256))
        return c.body(
          bytes as Uint8Array<ArrayBuffer> | ReadableStream,
          200,
          imageHeaders(first.sha256),
        )
      }
      // Another format: encoded from the PNG in memory (or in R2), cached under its URL.
      const res = await serveVariant(
        serveDeps(c.env),
        first.sha256,
        result.output,
        c.req.url,
        (p) => c.executionCtx.waitUntil(p),
        result.bytes?.[0],
      )
      if (!res) throw new Error(`indexed image ${first.sha256} is missing from R2`)
      c.header('Content-Location', imagePath(first.sha256, result.output))
      return c.body(res.body!, 200, Object.fromEntries(res.headers))
    },
  )

  // The original, and the variants derived from it (one handler; the paths are documented apart).
  const permanent = async (c: Context<AppEnv>) => {
    const file = c.req.param('file')!
    const sha256 = file.slice(0, 64)
    const variant = variantFromUrl(file.slice(65), { w: c.req.query('w'), q: c.req.query('q') })
    const tag = variantTag(sha256, variant)
    // The URL names the bytes: a client holding this ETag already has them.
    if (matchesEtag(c.req.header('If-None-Match'), tag)) {
      return c.body(null, 304, { ETag: `"${tag}"`, 'Cache-Control': IMMUTABLE })
    }
    const res = await serveVariant(serveDeps(c.env), sha256, variant, c.req.url, (p) =>
      c.executionCtx.waitUntil(p),
    )
    if (!res) throw new ProblemError('not-found', { detail: `no image ${sha256}` })
    return res
  }
  app.get('/:file{[0-9a-f]{64}\\.png}', permanent)
  app.get('/:file{[0-9a-f]{64}\\.(?:webp|jpg|jpeg)}', permanent)

  return app
}

/** Whether a `Prefer` header (RFC 7240) holds `respond-async`. */
function prefersRespondAsync(prefer: string | undefined): boolean {
  return (prefer ?? '')
    .split(',')
    .some((p) => p.split(';')[0].trim().toLowerCase() === 'respond-async')
}

/**
 * Headers and bookkeeping of a request answered before its images exist. The generation is kept
 * alive past the response (`waitUntil`): a client that leaves still gets its image cached, and
 * a failure is still refunded.
 */
function startedHeaders(c: Context<AppEnv>, started: StartedImages): void {
  const cached = started.state === 'ready' && started.result.cached
  c.set('cacheStatus', cached ? 'HIT' : 'MISS')
  c.header('X-Cache', cached ? 'HIT' : 'MISS')
  if (started.state === 'ready') {
    c.header('X-Seed', String(started.result.entry.images[0].seed))
    c.header('X-Request-Key', started.result.requestKey)
  } else {
    c.header('X-Seed', String(started.seed))
    c.header('X-Request-Key', started.requestKey)
    c.executionCtx.waitUntil(started.result.catch(() => {}))
  }
  c.header('Cache-Control', 'no-store')
}
