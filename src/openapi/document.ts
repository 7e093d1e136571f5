/**
 * @module
 * The OpenAPI 3.1 document of the API, built from the zod schemas the handlers validate with
 * (`ImageRequest`, `CreateKeyBody`) plus descriptive response schemas. Every operation lists
 * each problem it can answer, grouped by status, with the problem `type` URIs narrowed per
 * status, so clients can see every problem type. `test/workers/openapi.test.ts` checks that
 * every route of the app is here and that documented bounds are the enforced ones.
 *
 * @example
 * const doc = openApiDocument() // built once per isolate
 */
import {
  extendZodWithOpenApi,
  OpenAPIRegistry,
  OpenApiGeneratorV31,
  type ResponseConfig,
  type RouteConfig,
  type ZodContentObject,
  type ZodMediaTypeObject,
} from '@asteasolutions/zod-to-openapi'
import * as z from 'zod'
import { PIPELINE_VERSION } from '../cache/cache-key'
import { IMMUTABLE } from '../cache/image-store'
import { BatchRequest, EmbedRequest } from '../embeds/schema'
import { BATCH_MAX_BODY_BYTES } from '../embeds/limits'
import {
  OUTPUT_FORMAT_NAMES,
  OUTPUT_FORMATS,
  QUALITY_RANGE,
  VARIANT_EXTENSIONS,
  VARIANT_WIDTHS,
  type OutputFormat,
} from '../images/formats'
import { PICTURE_LIMITS } from '../images/pictures'
import { ImageRequest } from '../images/schema'
import { IMAGE_MEDIA_TYPES } from '../images/negotiate'
import { CreateKeyBody } from '../keys/api-keys'
import { PROMETHEUS_CONTENT_TYPE } from '../metrics/prometheus'
import { PROBLEM_TYPE_BASE, PROBLEM_TYPES, type ProblemSlug } from '../problem'
import {
  BatchResultSchema,
  CancelledJobSchema,
  CreatedKeySchema,
  HealthSchema,
  HuggingFaceImageRequestSchema,
  HuggingFaceRequestSchema,
  ImagesResponseSchema,
  JobSchema,
  KeyListSchema,
  KeyRecordSchema,
  WebhookSecretResponseSchema,
  MintedEmbedSchema,
  ModelsResponseSchema,
  OpenAIErrorSchema,
  OpenAIImageRequestSchema,
  OpenAIEditRequestSchema,
  OpenAIImagesResponseSchema,
  ProblemSchema,
  ProgressEventSchema,
  RunningJobSchema,
} from './schemas'

// `registry.register` names a schema through zod-to-openapi's `.openapi()` (see `named`).
// It only patches `ZodType.prototype`; handing it the `z` namespace as a value would keep every
// zod export (all ~40 locales) in the worker bundle, as `import { z }` does with esbuild.
extendZodWithOpenApi({ ZodType: z.ZodType } as unknown as typeof z)

/** The document's type, as the generator returns it. */
export type OpenApiDocument = ReturnType<OpenApiGeneratorV31['generateDocument']>

/** A response's headers, as OpenAPI header objects. */
type HeaderObjects = Exclude<NonNullable<ResponseConfig['headers']>, z.ZodObject>
/** A request schema for multipart/form-data: its picture fields as file parts. */
function multipartOf(schema: typeof ImageRequest) {
  const file = (field: keyof typeof schema.shape) =>
    z
      .string()
      .optional()
      .meta({
        format: 'binary',
        description: `${(schema.shape[field] as z.ZodType).meta()?.description ?? ''} As a file part, or any of the JSON forms as text.`,
      })
  return schema.extend({
    image: file('image'),
    mask: file('mask'),
    control_image: file('control_image'),
  })
}

/** A plain OpenAPI schema object (not zod). */
type SchemaObject = Exclude<NonNullable<ZodMediaTypeObject['schema']>, z.ZodType>

/** Problems any API-key route can answer (authentication, revocation, scope). */
const API_KEY_PROBLEMS = ['unauthorized', 'key-revoked', 'insufficient-scope'] as const
/** Problems of the admin routes. */
const ADMIN_PROBLEMS = ['unauthorized', 'admin-disabled'] as const
/** Problems of reading a JSON body (`jsonBody`). */
const BODY_PROBLEMS = ['malformed-request', 'payload-too-large', 'unsupported-media-type'] as const
/** Problems of a picture field (`src/images/pictures.ts`). */
const PICTURE_PROBLEMS = [
  'image-too-large',
  'image-too-many-pixels',
  'invalid-image',
  'image-not-found',
] as const
/** Problems of a generation that already started (a job, an embed's first view). */
const GENERATION_FAILURES = [
  'generation-rejected',
  'generation-failed',
  'generation-non-finite',
  'backend-error',
  'backend-unavailable',
  'backend-timeout',
  'engine-overloaded',
] as const
/** Problems of a generation: validation, quota, and the engine or GPU backend failing. */
const GENERATION_PROBLEMS = [
  ...API_KEY_PROBLEMS,
  ...BODY_PROBLEMS,
  ...PICTURE_PROBLEMS,
  'validation-error',
  'prompt-too-long',
  'rate-limited',
  ...GENERATION_FAILURES,
] as const
/** Problems of opening a signed embed URL. */
const EMBED_PROBLEMS = [
  'embed-signature-invalid',
  'embed-origin-not-allowed',
  'embed-expired',
  'key-revoked',
  'insufficient-scope',
] as const

const PROBLEM_REF = { $ref: '#/components/schemas/Problem' }
const OPENAI_ERROR_REF = { $ref: '#/components/schemas/OpenAIError' }

/** Response headers, described once. */
const HEADERS: Readonly<Record<string, HeaderObjects[string]>> = Object.freeze({
  'X-Cache': {
    description:
      '`HIT` when the images were already stored, `MISS` when this request needed a generation.',
    schema: { type: 'string', enum: ['HIT', 'MISS'] },
  },
  'X-Seed': {
    description: 'Seed of the first image (the drawn one when the request had none).',
    schema: { type: 'integer' },
  },
  'X-Request-Key': {
    description: 'The cache key of the request, for debugging.',
    schema: { type: 'string' },
  },
  'X-Prompt-Warnings': {
    description:
      'Present when the prompt or negative prompt uses words the model was never trained on (models that list `known_words` in GET /v1/models): a JSON array (non-ASCII as `\\uXXXX`) of `{"type": "unknown-words", "field": "prompt" | "negative_prompt", "words": [...], "detail": "..."}`. Not part of the cache key; the image is the same.',
    schema: { type: 'string' },
  },
  ETag: {
    description:
      'Strong: `"<sha256>"` of the PNG, or for another format or width `"<sha256>-<ext>[-w<width>][-q<quality>]-c<codec version>"`.',
    schema: { type: 'string' },
  },
  'Cache-Control': { schema: { type: 'string', example: IMMUTABLE } },
  'Content-Location': {
    description:
      'The permanent URL path `/v1/images/<sha256>.png`, or of the `output_format` (`.webp`, `.jpg?q=60`).',
    schema: { type: 'string' },
  },
  Vary: {
    description:
      'Request headers the answer depends on (e.g. `Accept, Prefer`; `Origin, Referer`).',
    schema: { type: 'string' },
  },
  'RateLimit-Limit': { description: "The key's burst.", schema: { type: 'integer' } },
  'RateLimit-Remaining': { description: 'Images left now.', schema: { type: 'integer' } },
  'RateLimit-Reset': { description: 'Seconds to a full bucket.', schema: { type: 'integer' } },
  'RateLimit-Policy': { schema: { type: 'string', example: '30;w=60' } },
  'Retry-After': { description: 'Seconds to wait.', schema: { type: 'integer' } },
  'WWW-Authenticate': { schema: { type: 'string', example: 'Bearer realm="edge-tti"' } },
  Location: { description: 'The job to poll: `/v1/jobs/<id>`.', schema: { type: 'string' } },
  'Preference-Applied': { schema: { type: 'string', example: 'respond-async' } },
  'Access-Control-Allow-Origin': {
    description: 'The allowed page origin, or `*` when the URL allows any page.',
    schema: { type: 'string' },
  },
  'Cross-Origin-Resource-Policy': { schema: { type: 'string', example: 'cross-origin' } },
})

/** A documented response header. */
type HeaderName = keyof typeof HEADERS

const headers = (...names: HeaderName[]) =>
  // One header table serves all three OpenAPI versions' (structurally equal) header types.
  Object.fromEntries(names.map((n) => [n, HEADERS[n]])) as HeaderObjects

const RATE_LIMIT_HEADERS: HeaderName[] = [
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'RateLimit-Policy',
]

/** Headers a problem of `slug` carries. */
function problemHeaders(slug: ProblemSlug): HeaderName[] {
  if (slug === 'unauthorized') return ['WWW-Authenticate']
  if (slug === 'rate-limited') return ['Retry-After']
  if (slug === 'generation-failed' || slug.startsWith('backend-')) return ['Retry-After']
  return []
}

/**
 * The error responses for `slugs` (plus `internal-error`), one per status. The body is a
 * `Problem` whose `type` is narrowed to that status's slugs; each slug has a named example.
 * `openai` renders them as the OpenAI error envelope instead, as that route does, with `code`
 * narrowed to the slugs (its `type` depends on the status, so no examples are made up).
 */
function problemResponses(
  slugs: readonly ProblemSlug[],
  options: { openai?: boolean } = {},
): RouteConfig['responses'] {
  const byStatus = new Map<number, ProblemSlug[]>()
  for (const slug of new Set([...slugs, 'internal-error' as const])) {
    const { status } = PROBLEM_TYPES[slug]
    byStatus.set(status, [...(byStatus.get(status) ?? []), slug])
  }
  const out: RouteConfig['responses'] = {}
  for (const [status, group] of [...byStatus].sort(([a], [b]) => a - b)) {
    const description = group.map((s) => `\`${s}\`: ${PROBLEM_TYPES[s].title}`).join('; ')
    const examples = Object.fromEntries(
      group.map((s) => [
        s,
        {
          summary: PROBLEM_TYPES[s].title,
          value: { type: PROBLEM_TYPE_BASE + s, title: PROBLEM_TYPES[s].title, status },
        },
      ]),
    )
    out[status] = {
      description,
      headers: headers(...new Set(group.flatMap(problemHeaders))),
      content: options.openai
        ? {
            'application/json': {
              schema: {
                allOf: [
                  OPENAI_ERROR_REF,
                  {
                    type: 'object',
                    properties: {
                      error: { type: 'object', properties: { code: { enum: group } } },
                    },
                  },
                ],
              },
            },
          }
        : {
            'application/problem+json': {
              schema: {
                allOf: [
                  PROBLEM_REF,
                  {
                    type: 'object',
                    properties: {
                      type: { enum: group.map((s) => PROBLEM_TYPE_BASE + s) },
                      status: { const: status },
                    },
                  },
                ],
              },
              examples,
            },
          },
    }
  }
  return out
}

const png = (description: string): ZodContentObject => ({
  'image/png': {
    schema: { type: 'string', contentMediaType: 'image/png', description } satisfies SchemaObject,
  },
})

/** Image bytes in each of `formats` (`OUTPUT_FORMATS` keys). */
const images = (
  description: string,
  formats: readonly OutputFormat[] = OUTPUT_FORMAT_NAMES,
): ZodContentObject =>
  Object.fromEntries(
    formats.map((f) => {
      const type = OUTPUT_FORMATS[f].contentType
      return [type, { schema: { type: 'string', contentMediaType: type, description } }]
    }),
  )

/** The `w` and `q` query parameters of a permanent URL (`src/images/variants.ts`). */
const variantQuery = (withQuality: boolean) =>
  z.object({
    w: z
      .string()
      .optional()
      .meta({
        description: `Width in pixels, one of ${VARIANT_WIDTHS.join(', ')} and at most the image's (else 422 naming \`w\`); the height keeps the aspect ratio. The original's width when absent.`,
        example: '32',
      }),
    ...(withQuality
      ? {
          q: z
            .string()
            .optional()
            .meta({
              description: `Encoder quality, an integer ${QUALITY_RANGE.min}–${QUALITY_RANGE.max} (100 best; else 422 naming \`q\`): ${OUTPUT_FORMATS.webp.defaultQuality} for webp, ${OUTPUT_FORMATS.jpeg.defaultQuality} for jpeg when absent.`,
              example: '60',
            }),
        }
      : {}),
  })

const html: ZodContentObject = { 'text/html': { schema: { type: 'string' } } }

/** What the document states about a deployment's configuration. */
export interface DocumentOptions {
  /** The app's JSON body limit (`AppOptions.maxBodyBytes`). */
  maxBodyBytes: number
}

/** The `{format}` of a variant URL: an extension other than the original's. */
const variantFormat = z
  .enum(Object.keys(VARIANT_EXTENSIONS).filter((e) => e !== 'png') as [string])
  .meta({ description: '`webp`, or `jpg` (`jpeg` is its alias).', example: 'webp' })

/** The `{sha256}` of a permanent URL. */
const sha256Param = z
  .string()
  .regex(/^[0-9a-f]{64}$/)
  .meta({ description: 'SHA-256 of the PNG bytes, lowercase hex.', example: '0'.repeat(64) })

/** Builds the document (see `openApiJson` for the memoized text). */
export function buildOpenApiDocument(options: DocumentOptions): OpenApiDocument {
  const registry = new OpenAPIRegistry()
  const apiKey = registry.registerComponent('securitySchemes', 'ApiKey', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'tti_<base64url>',
    description: 'An API key from POST /v1/keys, as `Authorization: Bearer tti_…`.',
  })
  const admin = registry.registerComponent('securitySchemes', 'AdminToken', {
    type: 'http',
    scheme: 'bearer',
    description: "The deployment's `ADMIN_TOKEN` secret, as `Authorization: Bearer …`.",
  })
  const needsKey = (scope: string) => ({
    security: [{ [apiKey.name]: [] }],
    description: `Needs an API key with the \`${scope}\` scope.`,
  })
  const needsAdmin = { security: [{ [admin.name]: [] }] }

  // Schemas made before `extendZodWithOpenApi` ran lack `.openapi()`, which `register` calls;
  // a clone is made now, with the same definition and `.meta()` (zod clones inherit it).
  const named = <T extends z.ZodType>(refId: string, schema: T): T =>
    registry.register(refId, schema.clone())
  named('Problem', ProblemSchema)
  named('OpenAIError', OpenAIErrorSchema)
  const imageRequest = named('ImageRequest', ImageRequest)
  const imagesResponse = named('ImagesResponse', ImagesResponseSchema)
  const models = named('ModelList', ModelsResponseSchema)
  const createKey = named('CreateKeyRequest', CreateKeyBody)
  const keyRecord = named('KeyRecord', KeyRecordSchema)
  const createdKey = named('CreatedKey', CreatedKeySchema)
  const keyList = named('KeyList', KeyListSchema)
  const openaiRequest = named('OpenAIImageRequest', OpenAIImageRequestSchema)
  const hfRequest = named('HuggingFaceTextToImageRequest', HuggingFaceRequestSchema)
  const openaiEdit = named('OpenAIEditRequest', OpenAIEditRequestSchema)
  const hfImageRequest = named('HuggingFaceImageToImageRequest', HuggingFaceImageRequestSchema)
  named('ProgressEvent', ProgressEventSchema)
  const runningJob = named('RunningJob', RunningJobSchema)
  const job = named('Job', JobSchema)
  const cancelledJob = named('CancelledJob', CancelledJobSchema)
  const webhookSecret = named('WebhookSecret', WebhookSecretResponseSchema)
  const embedRequest = named('EmbedRequest', EmbedRequest)
  const mintedEmbed = named('MintedEmbed', MintedEmbedSchema)
  const batchRequest = named('BatchRequest', BatchRequest)
  const batchResult = named('BatchResult', BatchResultSchema)

  const jsonBody = (schema: z.ZodType, maxBytes = options.maxBodyBytes) => ({
    body: {
      required: true,
      description: `JSON, at most ${maxBytes} bytes (else 413).`,
      content: { 'application/json': { schema } },
    },
  })
  const generationHeaders = [
    'X-Cache',
    'X-Seed',
    'X-Request-Key',
    'X-Prompt-Warnings',
    ...RATE_LIMIT_HEADERS,
  ] as const

  /** The answers of the OpenAI routes: OpenAI-shaped images, errors in OpenAI's envelope. */
  const openaiResponses: RouteConfig['responses'] = {
    200: {
      description: 'OpenAI-shaped images: permanent URLs or base64 PNGs.',
      headers: headers(...generationHeaders),
      content: { 'application/json': { schema: OpenAIImagesResponseSchema } },
    },
    ...problemResponses(GENERATION_PROBLEMS, { openai: true }),
  }

  const embedView = (variant: boolean): RouteConfig => ({
    method: 'get',
    path: variant ? '/v1/embeds/{token}.{format}' : '/v1/embeds/{token}.png',
    operationId: variant ? 'getEmbedImageVariant' : 'getEmbedImage',
    tags: ['Embeds'],
    summary: variant
      ? 'A signed embed URL in another format (and width), derived from the PNG (no key needed)'
      : 'A signed embed URL: the image, generated on first view (no key needed)',
    description:
      "The token is `<payload>.<mac>`: the canonical parameters and an HMAC with the minting key's embed secret. A cache miss generates on that key's quota. The extension and `w` / `q` are not signed: they pick a variant of the one image the token names, as on `/v1/images/{sha256}.{format}`.",
    request: {
      params: z.object({
        token: z.string().meta({
          description: 'As minted by POST /v1/embeds.',
          example: 'eyJ2IjoxfQ.c2lnbmF0dXJl',
        }),
        ...(variant ? { format: variantFormat } : {}),
      }),
      query: variantQuery(variant),
      headers: z.object({
        Origin: z.string().optional().meta({ description: 'Checked against the allowed origins.' }),
        Referer: z
          .string()
          .optional()
          .meta({ description: 'Its origin is checked when there is no Origin.' }),
        'If-None-Match': z.string().optional().meta({ description: 'The ETag you hold.' }),
      }),
    },
    responses: {
      200: {
        description: variant ? 'The variant.' : 'The PNG, or a narrower one with `w`.',
        headers: headers(
          'ETag',
          'Cache-Control',
          'Content-Location',
          'Cross-Origin-Resource-Policy',
          'Access-Control-Allow-Origin',
          'Vary',
          'X-Cache',
          'X-Request-Key',
          ...RATE_LIMIT_HEADERS,
        ),
        content: variant ? images('The image.', ['webp', 'jpeg']) : png('The image.'),
      },
      304: { description: 'Not modified: the ETag matches.', headers: headers('ETag') },
      ...problemResponses([
        ...EMBED_PROBLEMS,
        'validation-error',
        'prompt-too-long',
        'rate-limited',
        ...GENERATION_FAILURES,
      ]),
    },
  })

  const jobIdParam = z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .meta({ description: 'The job id (the request key).', example: 'a'.repeat(64) })

  const paths: RouteConfig[] = [
    {
      method: 'post',
      path: '/v1/images',
      operationId: 'createImages',
      tags: ['Images'],
      summary: 'Generate images (or serve them from the cache)',
      ...needsKey('generate'),
      request: {
        body: {
          required: true,
          description: `JSON (at most ${options.maxBodyBytes} bytes without pictures; pictures as base64, data: URLs or references), or multipart/form-data with pictures as file parts. Each picture is at most ${PICTURE_LIMITS.maxBytes} bytes (else 413 \`image-too-large\`).`,
          content: {
            'application/json': { schema: imageRequest },
            'multipart/form-data': { schema: multipartOf(ImageRequest) },
          },
        },
        headers: z.object({
          Accept: z
            .string()
            .optional()
            .meta({
              description: `\`${IMAGE_MEDIA_TYPES.join("` (default; the `output_format`'s type when the body has one) or `")}\`, or \`text/event-stream\` for step progress then the result; anything else is 406.`,
              example: 'application/json',
            }),
          Prefer: z.string().optional().meta({
            description:
              '`respond-async`: answer 202 with a job to poll at once (200 JSON when already cached). The job is recorded before the answer and run from a queue, so it survives a restart of the edge and is retried with backoff after a backend failure; with `webhook_url` its outcome is also POSTed there (for a hit too).',
            example: 'respond-async',
          }),
        }),
      },
      responses: {
        200: {
          description:
            'The image as PNG bytes (default; the `output_format` when given), or every image as JSON with `Accept: application/json`. Repeating a request is a cache hit with the same URLs.',
          headers: headers(
            ...generationHeaders,
            'ETag',
            'Cache-Control',
            'Content-Location',
            'Vary',
          ),
          content: {
            ...images('The first image (n must be 1), in `output_format`.'),
            'application/json': { schema: imagesResponse },
            'text/event-stream': {
              schema: {
                type: 'string',
                description:
                  'Server-Sent Events: `progress` (data: ProgressEvent) per step, then `done` (data: ImagesResponse), `error` (data: Problem) or `cancelled` (data: CancelledJob, after `DELETE /v1/jobs/{id}` with the id from `X-Request-Key`). Validation, auth and quota problems come as ordinary responses before the stream starts.',
              },
            },
          },
        },
        202: {
          description:
            'Accepted (`Prefer: respond-async`): the job is queued; poll `Location`, or wait for the `webhook_url` delivery.',
          headers: headers(
            'Location',
            'Preference-Applied',
            'Retry-After',
            'X-Cache',
            'X-Seed',
            'X-Request-Key',
            'X-Prompt-Warnings',
            ...RATE_LIMIT_HEADERS,
          ),
          content: { 'application/json': { schema: runningJob } },
        },
        ...problemResponses([...GENERATION_PROBLEMS, 'not-acceptable']),
      },
    },
    {
      method: 'get',
      path: '/v1/images/{sha256}.png',
      operationId: 'getImage',
      tags: ['Images'],
      summary: 'The permanent, content-addressed URL of an image (no key needed)',
      description:
        'Without `w`, the stored original, byte for byte. With `w`, a narrower PNG for `srcset`, encoded once from the original and cached.',
      request: {
        params: z.object({ sha256: sha256Param }),
        query: variantQuery(false),
        headers: z.object({
          'If-None-Match': z
            .string()
            .optional()
            .meta({ description: 'The ETag you hold: `"<sha256>"` answers 304.' }),
        }),
      },
      responses: {
        200: {
          description: 'The PNG; immutable.',
          headers: headers('ETag', 'Cache-Control'),
          content: png('The image.'),
        },
        304: { description: 'Not modified: the ETag matches.', headers: headers('ETag') },
        ...problemResponses(['not-found', 'validation-error']),
      },
    },
    {
      method: 'get',
      path: '/v1/images/{sha256}.{format}',
      operationId: 'getImageVariant',
      tags: ['Images'],
      summary: 'An image in another format (and width), derived from the stored PNG (no key)',
      description:
        "Encoded from the original PNG on the first request and cached under its canonical URL (`w`, then `q` when not the format's default), so each variant is encoded once. The original's sha256 still names the image; variants never change it.",
      request: {
        params: z.object({
          sha256: sha256Param,
          format: variantFormat,
        }),
        query: variantQuery(true),
        headers: z.object({
          'If-None-Match': z
            .string()
            .optional()
            .meta({ description: "The variant's ETag you hold: it answers 304." }),
        }),
      },
      responses: {
        200: {
          description: 'The variant; immutable.',
          headers: headers('ETag', 'Cache-Control'),
          content: images('The image.', ['webp', 'jpeg']),
        },
        304: { description: 'Not modified: the ETag matches.', headers: headers('ETag') },
        ...problemResponses(['not-found', 'validation-error']),
      },
    },
    {
      method: 'get',
      path: '/v1/jobs/{id}',
      operationId: 'getJob',
      tags: ['Images'],
      summary: 'Poll a generation started with `Prefer: respond-async`',
      ...needsKey('generate'),
      request: {
        params: z.object({ id: jobIdParam }),
      },
      responses: {
        200: {
          description:
            'Queued or running (with `Retry-After`), succeeded with the images, or cancelled. A failed job answers its problem.',
          headers: headers('Retry-After', 'Cache-Control'),
          content: { 'application/json': { schema: job } },
        },
        ...problemResponses([
          ...API_KEY_PROBLEMS,
          'not-found',
          'generation-cancelled',
          ...GENERATION_FAILURES,
        ]),
      },
    },
    {
      method: 'delete',
      path: '/v1/jobs/{id}',
      operationId: 'cancelJob',
      tags: ['Images'],
      summary: "Cancel a queued or running generation of this key's",
      ...needsKey('generate'),
      description:
        "Stops the job this key accepted, or the generation its own requests wait on (a stream: use `X-Request-Key`), and refunds its quota; polls then answer `cancelled`, the key's event streams end with a `cancelled` event, a webhook reports `image.job.cancelled`. Refused (409) when the job has finished or a request of another key waits on the same generation. Needs an API key with the `generate` scope.",
      request: { params: z.object({ id: jobIdParam }) },
      responses: {
        200: {
          description: 'Cancelled (also when it already was).',
          headers: headers('Cache-Control'),
          content: { 'application/json': { schema: cancelledJob } },
        },
        ...problemResponses([...API_KEY_PROBLEMS, 'not-found', 'job-not-cancellable']),
      },
    },
    {
      method: 'post',
      path: '/v1/embeds',
      operationId: 'createEmbed',
      tags: ['Embeds'],
      summary: 'Mint a signed embed URL for `<img src>` on static pages (generates nothing yet)',
      ...needsKey('embed'),
      request: jsonBody(embedRequest),
      responses: {
        200: {
          description: 'The signed URL, an `<img>` snippet and the canonical parameters.',
          content: { 'application/json': { schema: mintedEmbed } },
        },
        ...problemResponses([
          ...API_KEY_PROBLEMS,
          ...BODY_PROBLEMS,
          'validation-error',
          'prompt-too-long',
        ]),
      },
    },
    embedView(false),
    embedView(true),
    {
      method: 'post',
      path: '/v1/batch',
      operationId: 'createBatch',
      tags: ['Embeds'],
      summary: 'Many image requests at once: a map of permanent URLs for static site generators',
      ...needsKey('generate'),
      request: jsonBody(batchRequest, BATCH_MAX_BODY_BYTES),
      responses: {
        200: {
          description:
            'Every item, in order: its image, or its problem under `errors` (quota, validation, generation).',
          content: { 'application/json': { schema: batchResult } },
        },
        ...problemResponses([...API_KEY_PROBLEMS, ...BODY_PROBLEMS, 'validation-error']),
      },
    },
    {
      method: 'get',
      path: '/v1/models',
      operationId: 'listModels',
      tags: ['Models'],
      summary: 'The served models, with their defaults and limits',
      ...needsKey('read'),
      responses: {
        200: { description: 'The models.', content: { 'application/json': { schema: models } } },
        ...problemResponses(API_KEY_PROBLEMS),
      },
    },
    {
      method: 'post',
      path: '/v1/keys',
      operationId: 'createKey',
      tags: ['Keys (admin)'],
      summary: 'Create an API key',
      ...needsAdmin,
      request: jsonBody(createKey),
      responses: {
        201: {
          description: 'The key (shown once) and its record.',
          content: { 'application/json': { schema: createdKey } },
        },
        ...problemResponses([...ADMIN_PROBLEMS, ...BODY_PROBLEMS, 'validation-error']),
      },
    },
    {
      method: 'get',
      path: '/v1/keys',
      operationId: 'listKeys',
      tags: ['Keys (admin)'],
      summary: 'List API keys',
      ...needsAdmin,
      responses: {
        200: { description: 'Every key.', content: { 'application/json': { schema: keyList } } },
        ...problemResponses(ADMIN_PROBLEMS),
      },
    },
    {
      method: 'delete',
      path: '/v1/keys/{id}',
      operationId: 'revokeKey',
      tags: ['Keys (admin)'],
      summary: 'Revoke an API key (immediately, everywhere)',
      ...needsAdmin,
      request: {
        params: z.object({
          id: z
            .string()
            .meta({ description: 'The key id (16 hex digits).', example: '0123456789abcdef' }),
        }),
      },
      responses: {
        200: {
          description: 'The revoked record.',
          content: { 'application/json': { schema: keyRecord } },
        },
        ...problemResponses([...ADMIN_PROBLEMS, 'not-found']),
      },
    },
    {
      method: 'post',
      path: '/v1/keys/{id}/webhook-secret',
      operationId: 'rotateWebhookSecret',
      tags: ['Keys (admin)'],
      summary: 'Draw a new webhook secret for a key (the old one stops signing at once)',
      ...needsAdmin,
      request: {
        params: z.object({
          id: z
            .string()
            .meta({ description: 'The key id (16 hex digits).', example: '0123456789abcdef' }),
        }),
      },
      responses: {
        200: {
          description: 'The new secret, shown this once.',
          content: { 'application/json': { schema: webhookSecret } },
        },
        ...problemResponses([...ADMIN_PROBLEMS, 'not-found']),
      },
    },
    {
      method: 'get',
      path: '/healthz',
      operationId: 'health',
      tags: ['Operations'],
      summary: 'Liveness (no key needed)',
      responses: {
        200: {
          description: `Up; \`pipeline_version\` is ${PIPELINE_VERSION} in this build.`,
          content: { 'application/json': { schema: HealthSchema } },
        },
        ...problemResponses([]),
      },
    },
    {
      method: 'get',
      path: '/metrics',
      operationId: 'metrics',
      tags: ['Operations'],
      summary: 'Prometheus metrics',
      ...needsAdmin,
      responses: {
        200: {
          description: 'Prometheus text exposition format.',
          content: { [PROMETHEUS_CONTENT_TYPE]: { schema: { type: 'string' } } },
        },
        ...problemResponses(ADMIN_PROBLEMS),
      },
    },
    {
      method: 'post',
      path: '/v1/images/generations',
      operationId: 'openaiCreateImage',
      tags: ['Compatibility'],
      summary: 'OpenAI Images API (`openai.images.generate` with baseURL `<origin>/v1`)',
      ...needsKey('generate'),
      request: jsonBody(openaiRequest),
      responses: openaiResponses,
    },
    {
      method: 'post',
      path: '/v1/images/edits',
      operationId: 'openaiEditImage',
      tags: ['Compatibility'],
      summary: 'OpenAI image edits (`openai.images.edit` with baseURL `<origin>/v1`)',
      ...needsKey('generate'),
      request: {
        body: {
          required: true,
          description: 'multipart/form-data, as the OpenAI clients send it.',
          content: { 'multipart/form-data': { schema: openaiEdit } },
        },
      },
      responses: openaiResponses,
    },
    {
      method: 'post',
      path: '/v1/hf/image-to-image',
      operationId: 'huggingFaceImageToImage',
      tags: ['Compatibility'],
      summary:
        'Hugging Face image-to-image task (`imageToImage` with `endpointUrl`); `/v1/hf/models/{model}` takes it too',
      ...needsKey('generate'),
      request: {
        body: {
          required: true,
          description: 'JSON with the picture in base64, or the bare picture.',
          content: {
            'application/json': { schema: hfImageRequest },
            'image/png': { schema: { type: 'string', format: 'binary' } },
            'image/jpeg': { schema: { type: 'string', format: 'binary' } },
          },
        },
      },
      responses: {
        200: {
          description: 'The PNG bytes.',
          headers: headers(...generationHeaders, 'ETag', 'Cache-Control', 'Content-Location'),
          content: png('The image.'),
        },
        ...problemResponses(GENERATION_PROBLEMS),
      },
    },
    ...[
      { path: '/v1/hf/text-to-image', operationId: 'huggingFaceTextToImage', params: undefined },
      {
        path: '/v1/hf/models/{model}',
        operationId: 'huggingFaceModelTextToImage',
        params: z.object({
          model: z.string().meta({
            description: 'A model id from GET /v1/models (may contain `/`).',
            example: 'tiny-shapes',
          }),
        }),
      },
    ].map(
      ({ path, operationId, params }): RouteConfig => ({
        method: 'post',
        path,
        operationId,
        tags: ['Compatibility'],
        summary:
          'Hugging Face text-to-image task (`textToImage` with `endpointUrl`; on `/v1/hf/models/{model}` also image-to-image)',
        ...needsKey('generate'),
        request: { ...jsonBody(hfRequest), ...(params ? { params } : {}) },
        responses: {
          200: {
            description: 'The PNG bytes.',
            headers: headers(...generationHeaders, 'ETag', 'Cache-Control', 'Content-Location'),
            content: png('The image.'),
          },
          ...problemResponses(GENERATION_PROBLEMS),
        },
      }),
    ),
    {
      method: 'get',
      path: '/',
      operationId: 'playground',
      tags: ['Pages'],
      summary: 'The playground page',
      responses: { 200: { description: 'HTML.', content: html }, ...problemResponses([]) },
    },
    {
      method: 'get',
      path: '/openapi.json',
      operationId: 'openapi',
      tags: ['Pages'],
      summary: 'This document',
      responses: {
        200: {
          description: 'OpenAPI 3.1.',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
        ...problemResponses([]),
      },
    },
    {
      method: 'get',
      path: '/docs',
      operationId: 'docs',
      tags: ['Pages'],
      summary: 'Interactive reference of this document',
      responses: { 200: { description: 'HTML.', content: html }, ...problemResponses([]) },
    },
  ]
  for (const p of paths) registry.registerPath(p)

  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'edge-tti',
      version: '1.0.0',
      description: [
        'Text to image on the edge. Every image gets a permanent, content-addressed URL; a repeated request is served from the cache.',
        `Errors are RFC 9457 problem details (\`application/problem+json\`); \`type\` is \`${PROBLEM_TYPE_BASE}<slug>\` and each operation lists the slugs it can answer.`,
        'Interactive reference: `/docs`. Playground: `/`.',
      ].join('\n\n'),
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'Images' },
      { name: 'Embeds', description: 'Signed image URLs for static pages, and batches.' },
      { name: 'Models' },
      { name: 'Keys (admin)' },
      { name: 'Operations' },
      { name: 'Compatibility', description: 'Drop-in OpenAI and Hugging Face clients.' },
      { name: 'Pages' },
    ],
  })
}

const memo = new Map<number, string>()

/** The document as JSON text, built once per isolate and options (no request or binding). */
export function openApiJson(options: DocumentOptions): string {
  let json = memo.get(options.maxBodyBytes)
  if (json === undefined) {
    json = JSON.stringify(buildOpenApiDocument(options))
    memo.set(options.maxBodyBytes, json)
  }
  return json
}
