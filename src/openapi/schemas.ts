/**
 * @module
 * Schemas that only describe: response bodies, the problem shape, and the bodies of the
 * OpenAI / Hugging Face compatibility routes (translated by `src/compat/translate.ts` into a
 * POST /v1/images body, so their native fields reuse `ImageRequest`'s own field schemas).
 * Request bodies that the API validates live next to their validators.
 */
// A namespace import lets esbuild drop the zod exports (locales…) nobody uses.
import * as z from 'zod'
import { HF_PARAMETERS, OpenAIResponseFormatSchema, OpenAISizeSchema } from '../compat/translate'
import { ImageRequest } from '../images/schema'
import { RateLimitPolicySchema, SCOPES } from '../keys/api-keys'
import { PROBLEM_TYPE_BASE, PROBLEM_TYPES, type ProblemSlug } from '../problem'

/** Every problem `type` URI, in `PROBLEM_TYPES` order. */
export function problemTypeUris(): [string, ...string[]] {
  return (Object.keys(PROBLEM_TYPES) as ProblemSlug[]).map((s) => PROBLEM_TYPE_BASE + s) as [
    string,
    ...string[],
  ]
}

/** One invalid field of a `validation-error` problem. */
export const FieldErrorSchema = z.object({
  field: z.string().meta({ description: 'The field as the caller named it, e.g. `steps`.' }),
  detail: z.string().meta({ example: 'must be between 1 and 100' }),
})

/** RFC 9457 problem details, the body of every error response (`application/problem+json`). */
export const ProblemSchema = z
  .looseObject({
    type: z.enum(problemTypeUris()).meta({
      description: `Stable identifier; the slug after \`${PROBLEM_TYPE_BASE}\` is what clients match on.`,
    }),
    title: z.string().meta({ description: 'Fixed summary of the problem type.' }),
    status: z.number().int().meta({ description: 'The HTTP status, repeated.' }),
    detail: z.string().optional().meta({ description: 'What went wrong in this occurrence.' }),
    instance: z.string().optional().meta({ description: 'The request path.' }),
    errors: z
      .array(FieldErrorSchema)
      .optional()
      .meta({ description: '`validation-error`: every invalid field.' }),
    limit: z
      .number()
      .int()
      .optional()
      .meta({ description: '`payload-too-large`: the byte limit; `prompt-too-long`: tokens.' }),
    field: z.string().optional().meta({ description: '`prompt-too-long`: which prompt.' }),
    tokens: z.number().int().optional().meta({ description: '`prompt-too-long`: its tokens.' }),
    retry_after: z
      .number()
      .int()
      .optional()
      .meta({ description: '`rate-limited`: seconds until the request would fit the quota.' }),
    required_scope: z
      .enum(SCOPES)
      .optional()
      .meta({ description: '`insufficient-scope`: the scope the endpoint needs.' }),
  })
  .meta({
    description:
      'RFC 9457 problem details. Other extension members may appear; see each problem type.',
  })

/** One image of a POST /v1/images JSON response. */
export const ImageResultSchema = z.object({
  url: z.url().meta({
    description:
      "Permanent, content-addressed URL of the image in the request's `output_format` (the PNG by default).",
  }),
  png_url: z.url().optional().meta({
    description: "The original PNG's permanent URL, when `url` is another format's.",
  }),
  seed: z.number().int().meta({ description: 'The seed this image was made with.' }),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .meta({ description: 'SHA-256 of the PNG bytes (the original, whatever `output_format`).' }),
  width: z.number().int(),
  height: z.number().int(),
})

/** The POST /v1/images response with `Accept: application/json`. */
export const ImagesResponseSchema = z.object({
  images: z.array(ImageResultSchema),
  model: z.string().meta({ description: 'The model id that made the images.' }),
  cached: z.boolean().meta({ description: 'Whether the images were already stored.' }),
})

/** A served model with its defaults and limits (GET /v1/models). */
const supported = z.union([z.literal(true), z.string()])

export const ModelSchema = z.object({
  id: z.string().meta({ example: 'tiny-shapes' }),
  digest: z.string().meta({ description: "SHA-256 over the model's files (part of cache keys)." }),
  max_prompt_tokens: z.number().int(),
  defaults: z.object({
    steps: z.number().int(),
    guidance_scale: z.number(),
    scheduler: z.string(),
    width: z.number().int(),
    height: z.number().int(),
  }),
  limits: z.object({
    max_width: z.number().int(),
    max_height: z.number().int(),
    size_multiple: z.number().int(),
    min_steps: z.number().int(),
    max_steps: z.number().int(),
    min_guidance_scale: z.number(),
    max_guidance_scale: z.number(),
    max_images: z.number().int(),
  }),
  schedulers: z.array(z.string()).meta({ description: 'Accepted `scheduler` values.' }),
  options: z
    .array(z.string())
    .meta({ description: 'The generation options (e.g. `guidance_rescale`) this model honours.' }),
  conditioning: z
    .object({
      text: supported,
      image: supported,
      mask: supported,
      control_image: supported,
    })
    .meta({
      description:
        'What the model takes: text alone, `image` (image-to-image), `mask` (inpainting), `control_image` (ControlNet). `true`, or why not.',
    }),
  known_words: z.array(z.string()).optional().meta({
    description:
      'Every word the model was trained on, where it declares them (the bundled tiny-shapes does); a prompt with others is answered with `X-Prompt-Warnings`. Absent: not known.',
  }),
})

/** GET /v1/models. */
export const ModelsResponseSchema = z.object({ models: z.array(ModelSchema) })

/** A key's webhook secret (Standard Webhooks `whsec_` form). */
const WebhookSecretSchema = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/]+=*$/)
  .meta({
    description:
      "Signs the key's job webhooks (Standard Webhooks: `webhook-signature` is `v1,` + base64 HMAC-SHA256 of `webhook-id.webhook-timestamp.body` with the base64 after `whsec_` as the key). Shown when the key is made or the secret rotated; save it now.",
  })

/** A key as the admin API shows it (never the key or its hash). */
export const KeyRecordSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  name: z.string(),
  scopes: z.array(z.enum(SCOPES)),
  created_at: z.iso.datetime(),
  revoked_at: z.iso.datetime().optional(),
  rate_limit: RateLimitPolicySchema.optional(),
})

/** POST /v1/keys: the record plus the key, shown this once. */
export const CreatedKeySchema = KeyRecordSchema.extend({
  key: z
    .string()
    .regex(/^tti_[A-Za-z0-9_-]{43}$/)
    .meta({ description: 'The API key. Only its hash is stored: save it now.' }),
  webhook_secret: WebhookSecretSchema,
})

/** POST /v1/keys/{id}/webhook-secret. */
export const WebhookSecretResponseSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  webhook_secret: WebhookSecretSchema,
})

/** GET /v1/keys. */
export const KeyListSchema = z.object({ keys: z.array(KeyRecordSchema) })

/** GET /healthz. */
export const HealthSchema = z.object({
  status: z.literal('ok'),
  pipeline_version: z.number().int().meta({ description: 'Part of every cache key.' }),
})

const native = ImageRequest.shape

/** The OpenAI Images API body of POST /v1/images/generations. */
export const OpenAIImageRequestSchema = z
  .strictObject({
    prompt: native.prompt,
    n: native.n,
    size: OpenAISizeSchema.optional(),
    response_format: OpenAIResponseFormatSchema.optional(),
    model: native.model,
    negative_prompt: native.negative_prompt,
    seed: native.seed,
    steps: native.steps,
    guidance_scale: native.guidance_scale,
    scheduler: native.scheduler,
    output_format: native.output_format,
    output_compression: native.output_compression,
    truncate: native.truncate,
    quality: z.unknown().optional().meta({ description: 'Accepted and ignored.' }),
    style: z.unknown().optional().meta({ description: 'Accepted and ignored.' }),
    user: z.unknown().optional().meta({ description: 'Accepted and ignored.' }),
    moderation: z.unknown().optional().meta({ description: 'Accepted and ignored.' }),
  })
  .meta({
    description:
      'The OpenAI Images API body. Native POST /v1/images fields pass through as extensions; errors name the fields as sent (`size` for width/height).',
  })

/** OpenAI's image edits body (multipart/form-data, as `openai.images.edit` sends it). */
export const OpenAIEditRequestSchema = OpenAIImageRequestSchema.extend({
  image: z.string().meta({
    format: 'binary',
    description:
      'The picture to edit (PNG or JPEG; `image[]` with one file is accepted too). Its size is the output size.',
  }),
  mask: z.string().optional().meta({
    format: 'binary',
    description:
      "As OpenAI defines it: fully transparent pixels (alpha 0) mark where to edit. Without a mask, the image's own transparency is used; without any, the whole picture is edited (image-to-image).",
  }),
  strength: native.strength,
}).meta({
  description:
    'The OpenAI image edits body. Native POST /v1/images fields pass through as extensions.',
})

/** The OpenAI Images API response. */
export const OpenAIImagesResponseSchema = z.object({
  created: z.number().int().meta({ description: 'Unix time, seconds.' }),
  data: z.array(
    z.object({
      url: z.url().optional().meta({ description: 'The permanent URL, in `output_format`.' }),
      b64_json: z
        .string()
        .optional()
        .meta({ description: 'Base64 (RFC 4648 §4) image in `output_format` (PNG by default).' }),
    }),
  ),
  output_format: native.output_format.unwrap().meta({ description: 'The format of the images.' }),
})

/** The OpenAI error envelope; `code` is the problem slug, the status is the problem's. */
export const OpenAIErrorSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string().meta({ example: 'invalid_request_error' }),
    param: z.string().nullable(),
    code: z.string().meta({ description: 'The problem slug, e.g. `validation-error`.' }),
  }),
})

/** The Hugging Face `parameters` the translators map, each with its native field's schema. */
function hfParameters(targetSize: string) {
  return {
    ...(Object.fromEntries(
      Object.entries(HF_PARAMETERS).map(([hf, field]) => [hf, native[field]]),
    ) as { [K in keyof typeof HF_PARAMETERS]: (typeof native)[(typeof HF_PARAMETERS)[K]] }),
    target_size: z
      .object({ width: native.width, height: native.height })
      .optional()
      .meta({ description: targetSize }),
  }
}

/** The Hugging Face text-to-image task body. */
export const HuggingFaceRequestSchema = z
  .strictObject({
    inputs: native.prompt,
    parameters: z
      .strictObject({
        ...hfParameters('Alternative to width/height.'),
      })
      .optional(),
    options: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ description: 'Legacy `use_cache`/`wait_for_model`; accepted and ignored.' }),
  })
  .meta({
    description:
      'The Hugging Face text-to-image task. Errors name the fields as sent (e.g. `parameters.num_inference_steps`).',
  })

/** The Hugging Face image-to-image task (`imageToImage` with parameters sends JSON). */
export const HuggingFaceImageRequestSchema = z
  .strictObject({
    inputs: z.string().meta({ description: 'The picture, base64 (PNG or JPEG).' }),
    parameters: z
      .strictObject({
        prompt: native.prompt.optional(),
        strength: native.strength,
        ...hfParameters('Alternative to width/height (must equal the picture size).'),
      })
      .optional(),
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({
    description:
      'The Hugging Face image-to-image task; a bare `image/png` or `image/jpeg` body (no parameters) is accepted too.',
  })

/** One step of a running generation (SSE `progress` event, a running job's `progress`). */
export const ProgressEventSchema = z.object({
  step: z.number().int(),
  total_steps: z.number().int(),
  image: z.number().int().meta({ description: 'Index of the image being denoised.' }),
  n: z.number().int().meta({ description: 'Images in the request.' }),
  queue_position: z.number().int().min(1).optional().meta({
    description:
      'Present while the generation waits for the engine (step 0): 1 = it runs next. Under a burst generations run in arrival order.',
  }),
})

const JobId = z
  .string()
  .regex(/^[0-9a-f]{64}$/)
  .meta({ description: 'The job id: the request key (`X-Request-Key`).' })

/** A generation not finished: queued (202 to `Prefer: respond-async`) or running. */
export const RunningJobSchema = z.object({
  id: JobId,
  status: z.enum(['queued', 'running']).meta({
    description:
      '`queued`: accepted and recorded, waiting for a run (also between retries after a backend failure); `running`: denoising.',
  }),
  progress: ProgressEventSchema.nullable().meta({ description: 'Null until the first step.' }),
})

/** A job stopped by `DELETE /v1/jobs/{id}`. */
export const CancelledJobSchema = z.object({ id: JobId, status: z.literal('cancelled') })

/**
 * GET /v1/jobs/{id}: queued, running, succeeded with the images, or cancelled (a failure is its
 * problem).
 */
export const JobSchema = z.union([
  RunningJobSchema,
  ImagesResponseSchema.omit({ cached: true }).extend({
    id: JobId,
    status: z.literal('succeeded'),
  }),
  CancelledJobSchema,
])

/** The answer of POST /v1/embeds. */
export const MintedEmbedSchema = z.object({
  url: z.url().meta({ description: 'The URL to put in `<img src>`, in `output_format`.' }),
  html: z.string().meta({ description: 'A ready-to-paste `<img>` element.' }),
  picture: z.string().meta({
    description:
      "A ready-to-paste `<picture>`: a WebP `<source>` and an `<img>` in `output_format` (PNG for webp), each with `srcset` widths up to the image's.",
  }),
  key_id: z
    .string()
    .meta({ description: "The key whose quota pays for the first view's generation." }),
  params: z
    .record(z.string(), z.unknown())
    .meta({ description: 'The canonical parameters the URL names (defaults filled in).' }),
  expires_at: z.iso.datetime().nullable(),
  origins: z.array(z.string()).nullable().meta({ description: 'Allowed pages; null for any.' }),
})

/** The answer of POST /v1/batch: images and problems, each keyed by item id (or index). */
export const BatchResultSchema = z.object({
  images: z.record(z.string(), ImageResultSchema.extend({ cached: z.boolean() })),
  errors: z
    .record(z.string(), ProblemSchema)
    .meta({ description: 'The problem of each item that failed (the others still ran).' }),
})
