/**
 * @module
 * Request bodies of POST /v1/embeds and POST /v1/batch as zod schemas (described by the OpenAPI
 * document, validated by `parseEmbedRequest` / `parseBatchRequest`). Both build on the
 * POST /v1/images body, without `n`: an embed URL and a batch item each name one image.
 */
import * as z from 'zod'
import { ImageRequest, MAX_SEED, MODEL_BOUNDED_FIELDS } from '../images/schema'
import { throwFieldErrors } from '../problem'
import { fieldErrors } from '../schema'
import { BATCH_MAX_ITEMS, EMBED_MAX_EXPIRES_IN, EMBED_MAX_ORIGINS } from './limits'

/** A page origin (`https://example.com`, `http://127.0.0.1:8080`), normalised by `URL`. */
export const PageOrigin = z
  .string({ error: 'must be a string' })
  .transform((s, ctx) => {
    let url: URL | undefined
    try {
      url = new URL(s)
    } catch {
      // reported below
    }
    if (
      !url ||
      !['http:', 'https:'].includes(url.protocol) ||
      url.pathname !== '/' ||
      url.search ||
      url.hash ||
      url.username ||
      url.password
    ) {
      ctx.addIssue({ code: 'custom', message: 'must be an origin like https://example.com' })
      return z.NEVER
    }
    return url.origin
  })
  .meta({
    description: 'A page origin: scheme, host and port, no path.',
    example: 'https://blog.example.com',
  })

/** A picture field of an embed: a stored picture's sha256 only (URLs never carry bytes). */
function storedPicture(field: string) {
  return z
    .string({ error: 'must be the sha256 of a stored picture' })
    .regex(/^[0-9a-f]{64}$/, { error: 'must be the sha256 of a stored picture' })
    .optional()
    .meta({
      description: `As POST /v1/images' \`${field}\`, by the sha256 of a stored picture (an uploaded input or a generated image): embed URLs never carry picture bytes.`,
    })
}

/** The POST /v1/embeds body: one image's parameters (seed required) plus expiry and origins. */
export const EmbedRequest = ImageRequest.omit({ n: true, webhook_url: true })
  .extend({
    image: storedPicture('image'),
    mask: storedPicture('mask'),
    control_image: storedPicture('control_image'),
    seed: z
      .number({ error: (i) => (i.input === undefined ? 'is required' : 'must be an integer') })
      .int({ error: 'must be an integer' })
      .min(0, { error: `must be between 0 and ${MAX_SEED}` })
      .max(MAX_SEED, { error: `must be between 0 and ${MAX_SEED}` })
      .meta({
        description: 'Required: an embed URL names exactly one image, so the seed is part of it.',
        example: 42,
      }),
    expires_in: z
      .number({ error: 'must be an integer' })
      .int({ error: 'must be an integer' })
      .min(1, { error: `must be between 1 and ${EMBED_MAX_EXPIRES_IN}` })
      .max(EMBED_MAX_EXPIRES_IN, { error: `must be between 1 and ${EMBED_MAX_EXPIRES_IN}` })
      .optional()
      .meta({ description: 'Seconds until the URL stops working (410); never when absent.' }),
    origins: z
      .array(PageOrigin, { error: 'must be an array of origins' })
      .min(1, { error: 'must list at least one origin (omit it to allow any)' })
      .max(EMBED_MAX_ORIGINS, { error: `must list at most ${EMBED_MAX_ORIGINS} origins` })
      .optional()
      .meta({
        description:
          'Pages allowed to show the image (checked against Origin, else the Referer origin) and to read it with CORS; any page when absent.',
      }),
  })
  .meta({
    description:
      'Body of POST /v1/embeds: the POST /v1/images fields for one image (no `n`, `seed` required), plus `expires_in` and `origins`.',
  })

/** A structurally valid POST /v1/embeds body. */
export type EmbedRequestBody = z.output<typeof EmbedRequest>

/** One item of a batch: the POST /v1/images fields for one image, plus an optional `id`. */
export const BatchItem = ImageRequest.omit({ n: true, webhook_url: true }).extend({
  id: z
    .string({ error: 'must be a string' })
    .min(1, { error: 'must not be empty' })
    .max(200, { error: 'must be at most 200 characters' })
    .optional()
    .meta({ description: 'The item\'s key in the answer; its index ("0", "1", …) when absent.' }),
})

/** The POST /v1/batch body. */
export const BatchRequest = z
  .strictObject(
    {
      items: z
        .array(BatchItem, { error: 'must be an array of image requests' })
        .min(1, { error: 'must hold at least one item' })
        .max(BATCH_MAX_ITEMS, { error: `must hold at most ${BATCH_MAX_ITEMS} items` }),
    },
    { error: 'must be a JSON object' },
  )
  .meta({
    description: `Body of POST /v1/batch: up to ${BATCH_MAX_ITEMS} image requests, generated in order.`,
  })

/** A structurally valid POST /v1/batch body. */
export type BatchRequestBody = z.output<typeof BatchRequest>

/**
 * Parses a POST /v1/embeds body; throws 422 naming every invalid field. Range errors of the
 * model-bounded fields (steps, size, guidance, seed) are left to `resolveRequest`, as on
 * POST /v1/images, so the message names the model's bounds; the body is then returned as is,
 * and `resolveRequest` throws before any of it is used.
 */
export function parseEmbedRequest(body: unknown): EmbedRequestBody {
  const parsed = EmbedRequest.safeParse(body)
  if (parsed.success) return parsed.data
  throwUnlessModelBounds(parsed.error.issues, 0)
  return body as EmbedRequestBody
}

/**
 * Parses a POST /v1/batch body: its structure and every item's types as one 422 (nothing is
 * generated), ids unique; model-bounded ranges are left to each item's `createImages`, which
 * reports them as that item's problem, in POST /v1/images' words.
 */
export function parseBatchRequest(body: unknown): BatchRequestBody {
  const parsed = BatchRequest.safeParse(body)
  if (!parsed.success) throwUnlessModelBounds(parsed.error.issues, 2)
  const items = parsed.success ? parsed.data.items : (body as BatchRequestBody).items
  // Ids key the answer, so two items may not end up under the same one.
  const seen = new Set<string>()
  const duplicates = items.flatMap((item, i) => {
    const id = batchId(item, i)
    const dup = seen.has(id)
    seen.add(id)
    return dup ? [{ field: `items.${i}.id`, detail: `duplicate id "${id}"` }] : []
  })
  if (duplicates.length) throwFieldErrors(duplicates)
  return { items }
}

/** Throws the issues as a 422, except range issues of model-bounded fields at path `depth`. */
function throwUnlessModelBounds(issues: readonly z.core.$ZodIssue[], depth: number): void {
  const errors = fieldErrors(
    issues.filter(
      (i) =>
        !(
          (i.code === 'too_small' || i.code === 'too_big') &&
          i.path.length === depth + 1 &&
          (MODEL_BOUNDED_FIELDS as readonly PropertyKey[]).includes(i.path[depth])
        ),
    ),
  )
  if (errors.length) throwFieldErrors(errors)
}

/** The key of item `index` in a batch answer: its `id`, else its index. */
export function batchId(item: { id?: string }, index: number): string {
  return item.id ?? String(index)
}
