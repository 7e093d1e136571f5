/**
 * @module
 * The POST /v1/images body as one zod schema: `resolveRequest` validates every body with it, and
 * the OpenAPI document (`src/openapi`) describes the endpoint with it, so the two cannot drift.
 * It holds what is true for every model (types, unknown fields, floors, the seed range); the
 * bounds that depend on the chosen model (`GET /v1/models` `limits`, `schedulers`, the token
 * window) are checked afterwards in `validate.ts`, inside these floors.
 *
 * @example
 * const body = parseOrThrow(ImageRequest, await c.req.json())
 */
// A namespace import lets esbuild drop the zod exports (locales…) nobody uses.
import * as z from 'zod'
import { GenerationOptions } from '../engine/options'
import { OUTPUT_FORMAT_NAMES, OUTPUT_FORMATS, QUALITY_RANGE } from './formats'

/** Largest seed: seeds are unsigned 32-bit (image i of a request uses seed + i). */
export const MAX_SEED = 2 ** 32 - 1

/**
 * Longest prompt in characters, checked before tokenizing: CLIP's BPE cost grows faster than a
 * word's length (one 8,000-letter word took 12-120 ms here, by its letters, and about 1 s in the
 * attack run; 2,000 letters took 3-20 ms). No token window needs more, and hosted models' own
 * bound (1000 bytes) stays below it.
 */
export const MAX_PROMPT_CHARS = 2000

/**
 * Lowest value of each numeric field for any model. A model's own minimum is never below it
 * (`validate.ts` takes the larger of the two), so what the schema rejects the API rejects too.
 */
export const IMAGE_FIELD_FLOORS = Object.freeze({
  seed: 0,
  steps: 1,
  guidance_scale: 0,
  width: 1,
  height: 1,
  n: 1,
} as const)

/** Fields whose upper (and possibly tighter lower) bound comes from the model's limits. */
export const MODEL_BOUNDED_FIELDS = Object.freeze([
  'seed',
  'steps',
  'guidance_scale',
  'width',
  'height',
  'n',
] as const)

/** OpenAPI annotations of a field (zod's `.meta` replaces, so they are set once). */
type FieldMeta = { description: string; default?: unknown; example?: unknown }

const picture = (description: string) =>
  z
    .string({ error: 'must be base64, a data: URL, a sha256 or an image URL (or a file part)' })
    .optional()
    .meta({ description })

const string = (meta: FieldMeta) => z.string({ error: 'must be a string' }).optional().meta(meta)

const promptText = () =>
  z
    .string({ error: (i) => (i.input === undefined ? 'is required' : 'must be a string') })
    .max(MAX_PROMPT_CHARS, { error: `must be at most ${MAX_PROMPT_CHARS} characters` })

const integer = (field: keyof typeof IMAGE_FIELD_FLOORS, meta: FieldMeta) =>
  z
    .number({ error: 'must be an integer' })
    .int({ error: 'must be an integer' })
    .min(IMAGE_FIELD_FLOORS[field], { error: `must be at least ${IMAGE_FIELD_FLOORS[field]}` })
    .optional()
    .meta(meta)

/**
 * The POST /v1/images body: `application/json` (at most 8 KiB, more with pictures) or
 * `multipart/form-data` (pictures as file parts).
 */
export const ImageRequest = z
  .strictObject(
    {
      prompt: promptText().meta({
        description:
          "What to draw: at most 2000 characters, and the model's `max_prompt_tokens` tokens unless `truncate` is set (else 422 `prompt-too-long`).",
        example: 'a red circle on a white background',
      }),
      negative_prompt: promptText().optional().meta({
        description: 'What to steer away from; same limits as `prompt`.',
        default: '',
      }),
      seed: z
        .number({ error: 'must be an integer' })
        .int({ error: 'must be an integer' })
        .min(0, { error: `must be between 0 and ${MAX_SEED}` })
        .max(MAX_SEED, { error: `must be between 0 and ${MAX_SEED}` })
        .optional()
        .meta({
          description:
            'Seed of the first image; image i uses seed + i, so seed + n - 1 must not exceed 2^32 - 1. Drawn at random when absent (reported in `X-Seed`).',
          example: 42,
        }),
      steps: integer('steps', {
        description:
          "Denoising steps, within the model's `min_steps`..`max_steps` (model default when absent).",
        example: 4,
      }),
      guidance_scale: z
        .number({ error: 'must be a number' })
        .min(IMAGE_FIELD_FLOORS.guidance_scale, { error: 'must be at least 0' })
        .optional()
        .meta({
          description:
            "Classifier-free guidance scale, within the model's `min_guidance_scale`..`max_guidance_scale` (model default when absent).",
        }),
      width: integer('width', {
        description:
          "Image width in pixels: a multiple of the model's `size_multiple`, at most `max_width` (model default when absent).",
      }),
      height: integer('height', {
        description:
          "Image height in pixels: a multiple of the model's `size_multiple`, at most `max_height` (model default when absent).",
      }),
      scheduler: string({
        description:
          "One of the model's `schedulers` (aliases such as `euler`, or diffusers class names); model default when absent.",
      }),
      model: string({
        description: 'A model id from `GET /v1/models`; the first served model when absent.',
      }),
      n: integer('n', {
        description:
          "Images to make, at most the model's `max_images`; n > 1 needs `Accept: application/json`.",
        default: 1,
      }),
      output_format: z
        .enum(OUTPUT_FORMAT_NAMES, { error: `must be one of ${OUTPUT_FORMAT_NAMES.join(', ')}` })
        .optional()
        .meta({
          description:
            'Format of the answer: the image bytes, and the URLs of a JSON answer (`/v1/images/{sha256}.webp`, …). The stored original is always the PNG (its sha256 names the image); other formats are encoded from it and cached. Does not change the cache key.',
          default: 'png',
        }),
      output_compression: z
        .number({ error: 'must be an integer' })
        .int({ error: 'must be an integer' })
        .min(QUALITY_RANGE.min, {
          error: `must be between ${QUALITY_RANGE.min} and ${QUALITY_RANGE.max}`,
        })
        .max(QUALITY_RANGE.max, {
          error: `must be between ${QUALITY_RANGE.min} and ${QUALITY_RANGE.max}`,
        })
        .optional()
        .meta({
          description: `Encoder quality of \`webp\` or \`jpeg\`, ${QUALITY_RANGE.min}–${QUALITY_RANGE.max} (100 best, as OpenAI's \`output_compression\`); ${OUTPUT_FORMATS.webp.defaultQuality} for webp and ${OUTPUT_FORMATS.jpeg.defaultQuality} for jpeg when absent. Not for png (422).`,
        }),
      truncate: z.boolean({ error: 'must be a boolean' }).optional().meta({
        description: "Cut an over-long prompt to the model's token window instead of a 422.",
        default: false,
      }),
      webhook_url: z
        .string({ error: 'must be a string' })
        .max(2048, { error: 'must be at most 2048 characters' })
        .optional()
        .meta({
          description:
            "With `Prefer: respond-async`: where the job's outcome is POSTed, signed per Standard Webhooks with the key's webhook secret (`webhook-id`, `webhook-timestamp`, `webhook-signature`), retried with backoff until a 2xx. An https URL with a public host (private and loopback hosts only where the deployment allows them). Does not change the cache key.",
        }),
      image: picture(
        "Init picture for image-to-image or, with `mask`, inpainting: PNG or JPEG as base64 or a `data:` URL (in JSON), a file part (in multipart/form-data), or a stored image by its sha256 or permanent URL (`/v1/images/{sha256}.png`), which costs no upload. It sets the output size; at most 4 MiB and 2048x2048 pixels, sides multiples of the model's `size_multiple`.",
      ),
      mask: picture(
        'Inpainting mask, the size of `image`: white (luminance ≥ 128) is repainted, black kept. Same forms as `image`.',
      ),
      control_image: picture(
        "Control picture for the model's ControlNet (a white silhouette on black, a depth map); it sets the output size. Same forms as `image`.",
      ),
      ...GenerationOptions.shape,
    },
    { error: 'must be a JSON object' },
  )
  .meta({
    description:
      'Body of POST /v1/images. Unknown fields are rejected with 422. Model-dependent bounds are listed per model by `GET /v1/models`; a value outside them is a 422 `validation-error` naming the field.',
  })

/** A structurally valid POST /v1/images body. */
export type ImageRequestBody = z.output<typeof ImageRequest>
