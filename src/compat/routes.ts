/**
 * @module
 * Drop-in compatibility routes, so existing clients work unchanged against this API:
 *
 * - `POST /v1/images/generations`: the OpenAI Images API (`openai.images.generate` with
 *   `baseURL: '<origin>/v1'`), answering `{created, data: [{url} | {b64_json}]}` and errors as
 *   OpenAI's `{error: {message, type, param, code}}` with the same statuses as everywhere else;
 * - `POST /v1/images/edits`: OpenAI's image edits (`openai.images.edit`, multipart `image` and
 *   a `mask` whose transparent pixels mark the area to repaint), answered like generations;
 * - `POST /v1/hf/text-to-image`, `POST /v1/hf/image-to-image` and `POST /v1/hf/models/<model>`
 *   (either task, told apart by the body): the Hugging Face tasks (`@huggingface/inference`'s
 *   `textToImage` / `imageToImage` with `endpointUrl`), answering PNG bytes and errors as
 *   problem+json (whose `detail` that client shows).
 *
 * Both translate the body and call the same `createImages` as POST /v1/images: same key scope,
 * quota, validation, cache entries and single-flight generation.
 */
import { Hono, type Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { AppEnv } from '../app-env'
import { imageDeps, serveDeps, storeDeps } from '../bindings'
import { getImage } from '../cache/image-store'
import { imageHeaders, imagePath, serveVariant } from '../cache/serve-image'
import type { EngineProvider } from '../engine/provider'
import { createImages, type CreateImagesResult } from '../images/create-images'
import { PROMPT_WARNINGS_HEADER, requestWarnings, warningsHeader } from '../images/prompt-warnings'
import { isOriginal } from '../images/formats'
import type { RateLimitPolicy } from '../keys/api-keys'
import { apiKeyAuth } from '../middleware/auth'
import { imageBody } from '../middleware/image-body'
import { PICTURE_LIMITS } from '../images/pictures'
import { ImageRequest } from '../images/schema'
import { onProblem } from '../middleware/problem'
import { rateLimit } from '../middleware/rate-limit'
import { PROBLEM_TYPE_BASE } from '../problem'
import {
  fromHuggingFace,
  fromHuggingFaceImage,
  fromOpenAI,
  fromOpenAIEdit,
  isHuggingFaceImageToImage,
  withCallerFieldNames,
  type OpenAIResponseFormat,
  type Translated,
} from './translate'
import { publicBase } from '../public-url'

/** What the compatibility routes need: the same options as the image routes. */
export interface CompatOptions {
  engine: EngineProvider
  maxBodyBytes: number
  rateLimit: RateLimitPolicy
}

/** OpenAI's error `type` for each status class it documents. */
const OPENAI_ERROR_TYPES = Object.freeze({
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
} as Record<number, string>)

/** The OpenAI Images API route, mounted at `/v1`. */
export function openAIRoutes(options: CompatOptions) {
  const app = new Hono<AppEnv>()
  const answer = async (
    c: Context<AppEnv>,
    { body, fieldNames, extra }: Translated<{ responseFormat: OpenAIResponseFormat }>,
  ) => {
    const result = await withCallerFieldNames(fieldNames, () =>
      create(c, options, body, { singleImage: false }),
    )
    const data = await Promise.all(
      result.entry.images.map(async (img, i) =>
        extra.responseFormat === 'url'
          ? { url: new URL(imagePath(img.sha256, result.output), publicBase(c)).href }
          : { b64_json: base64(await outputBytes(c, result, i)) },
      ),
    )
    c.header('Cache-Control', 'no-store')
    return c.json({
      created: Math.floor(Date.now() / 1000),
      data,
      output_format: result.output.format,
    })
  }
  app.post('/images/generations', ...generation(options), (c) =>
    answer(c, fromOpenAI(c.get('json'))),
  )
  app.post('/images/edits', ...generation(options), async (c) =>
    answer(c, await fromOpenAIEdit(c.get('json'))),
  )
  app.onError(openAIError)
  return app
}

/** The Hugging Face text-to-image routes, mounted at `/v1/hf`. */
export function huggingFaceRoutes(options: CompatOptions) {
  const app = new Hono<AppEnv>()
  const handle = async (c: Context<AppEnv>, model?: string, task?: 'image-to-image') => {
    const json = c.get('json')
    const image = task === 'image-to-image' || isHuggingFaceImageToImage(json)
    const { body, fieldNames } = image
      ? fromHuggingFaceImage(json, model)
      : fromHuggingFace(json, model)
    const result = await withCallerFieldNames(fieldNames, () =>
      create(c, options, body, { singleImage: true }),
    )
    const sha256 = result.entry.images[0].sha256
    c.header('Content-Location', imagePath(sha256))
    return c.body(await imageBytes(c, result, 0), 200, imageHeaders(sha256))
  }
  app.post('/text-to-image', ...generation(options), (c) => handle(c))
  app.post('/image-to-image', ...generation(options), (c) => handle(c, undefined, 'image-to-image'))
  app.post('/models/:model{.+}', ...generation(options), (c) => handle(c, c.req.param('model')))
  return app
}

/** The middleware of every generating route, as on POST /v1/images. */
function generation(options: CompatOptions) {
  return [
    apiKeyAuth({ scope: 'generate' }),
    rateLimit({ defaults: options.rateLimit }),
    imageBody({
      maxBytes: options.maxBodyBytes,
      maxPictureBytes: PICTURE_LIMITS.maxBytes,
      // OpenAI's `image` / `image[]` and `mask`; Hugging Face's `inputs`.
      pictures: ['image', 'image[]', 'mask', 'inputs'],
      schema: ImageRequest,
      rawPicture: 'inputs',
    }),
  ] as const
}

/** Calls the domain function with the request's bindings; sets the cache headers. */
async function create(
  c: Context<AppEnv>,
  options: CompatOptions,
  body: unknown,
  flags: { singleImage: boolean },
): Promise<CreateImagesResult> {
  const deps = await imageDeps(c.env, options.engine, c.get('charge'), c.get('apiKey').id)
  const result = await createImages(deps, body, flags)
  c.set('cacheStatus', result.cached ? 'HIT' : 'MISS')
  c.header('X-Cache', result.cached ? 'HIT' : 'MISS')
  c.header('X-Seed', String(result.entry.images[0].seed))
  c.header('X-Request-Key', result.requestKey)
  // As on POST /v1/images: words the model never saw (the translated body names the model).
  const warnings = warningsHeader(requestWarnings(deps.engine, body))
  if (warnings) c.header(PROMPT_WARNINGS_HEADER, warnings)
  return result
}

/** The PNG bytes of image `i`: in memory after a generation, from R2 after a hit. */
async function imageBytes(
  c: Context<AppEnv>,
  result: CreateImagesResult,
  i: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const fresh = result.bytes?.[i]
  if (fresh) return new Uint8Array(fresh)
  const { sha256 } = result.entry.images[i]
  const stored = await getImage(storeDeps(c.env), sha256)
  if (!stored) throw new Error(`indexed image ${sha256} is missing from R2`)
  return new Uint8Array(await stored.arrayBuffer())
}

/**
 * The bytes of image `i` in the request's output format: the PNG itself, or its variant, encoded
 * once and cached under the variant's permanent URL.
 */
async function outputBytes(
  c: Context<AppEnv>,
  result: CreateImagesResult,
  i: number,
): Promise<Uint8Array<ArrayBuffer>> {
  if (isOriginal(result.output)) return imageBytes(c, result, i)
  const { sha256 } = result.entry.images[i]
  const res = await serveVariant(
    serveDeps(c.env),
    sha256,
    result.output,
    c.req.url,
    (p) => c.executionCtx.waitUntil(p),
    result.bytes?.[i],
  )
  if (!res) throw new Error(`indexed image ${sha256} is missing from R2`)
  return new Uint8Array(await res.arrayBuffer())
}

/** Renders any error as OpenAI's error object, keeping the status and headers of the problem. */
async function openAIError(err: Error, c: Context<AppEnv>): Promise<Response> {
  const problemRes = await onProblem(err, c)
  const problem = (await problemRes.json()) as {
    type: string
    title: string
    detail?: string
    errors?: { field: string }[]
  }
  const { status } = problemRes
  const headers = Object.fromEntries(problemRes.headers)
  delete headers['content-type']
  return c.json(
    {
      error: {
        message: problem.detail ?? problem.title,
        type:
          OPENAI_ERROR_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error'),
        param: problem.errors?.[0]?.field ?? null,
        code: problem.type.replace(PROBLEM_TYPE_BASE, ''),
      },
    },
    status as ContentfulStatusCode,
    headers,
  )
}

/** Standard base64 (RFC 4648 §4), as OpenAI's `b64_json` carries it. */
function base64(bytes: Uint8Array): string {
  let s = ''
  // Chunks keep String.fromCharCode's argument count far below engine limits.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  }
  return btoa(s)
}
