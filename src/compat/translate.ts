/**
 * @module
 * Request translation for the drop-in compatibility routes: an OpenAI Images API body or a
 * Hugging Face text-to-image task body becomes a POST /v1/images body, which `createImages`
 * then validates, keys and serves exactly like a native request (same cache, same quota).
 * Validation errors are renamed back to the field names the caller actually sent.
 */
// A namespace import lets esbuild drop the zod exports (locales…) nobody uses.
import * as z from 'zod'
import { decodePicture } from '../images/pictures'
import { encodePng } from '../pipeline/png'
import { ProblemError, throwFieldErrors, type FieldError } from '../problem'

/** OpenAI fields that have no meaning here and are accepted without effect. */
export const OPENAI_IGNORED_FIELDS = Object.freeze(['quality', 'style', 'user', 'moderation'])

/** The `response_format`s of the OpenAI Images API. */
export const OPENAI_RESPONSE_FORMATS = Object.freeze(['url', 'b64_json'] as const)

/** One of `OPENAI_RESPONSE_FORMATS`. */
export type OpenAIResponseFormat = (typeof OPENAI_RESPONSE_FORMATS)[number]

/** OpenAI's `response_format`, as validated here and shown in the OpenAPI document. */
export const OpenAIResponseFormatSchema = z
  .enum(OPENAI_RESPONSE_FORMATS, { error: 'must be "url" or "b64_json"' })
  .meta({ description: 'Permanent URLs or inline base64 PNGs.', default: 'url' })

/** OpenAI's `size`: "WIDTHxHEIGHT" or "auto" (the model's default size). */
export const OpenAISizeSchema = z
  .union([z.literal('auto'), z.string().regex(/^\d+x\d+$/)], {
    error: 'must be "WIDTHxHEIGHT", e.g. "64x64"',
  })
  .meta({ description: '"WIDTHxHEIGHT", e.g. "64x64"; "auto" for the model default.' })

/** A native body plus how the caller's field names map back onto native ones. */
export interface Translated<Extra = object> {
  /** The POST /v1/images body. */
  body: unknown
  /** Native field name → the caller's name, for error messages. */
  fieldNames: Record<string, string>
  extra: Extra
}

/**
 * Translates `POST /v1/images/generations`: `size` "WxH" → width/height, `response_format`
 * taken out, `quality`/`style`/`user`/`moderation` dropped; native fields (seed, steps,
 * negative_prompt, guidance_scale, scheduler) pass through as extensions.
 */
export function fromOpenAI(body: unknown): Translated<{ responseFormat: OpenAIResponseFormat }> {
  const fieldNames = { width: 'size', height: 'size' }
  if (!isObject(body)) return { body, fieldNames, extra: { responseFormat: 'url' } }
  const { size, response_format: format = 'url', ...rest } = body
  const errors: FieldError[] = []
  for (const k of OPENAI_IGNORED_FIELDS) delete rest[k]
  const formatOk = OpenAIResponseFormatSchema.safeParse(format)
  if (!formatOk.success)
    errors.push({ field: 'response_format', detail: formatOk.error.issues[0].message })
  if (size !== undefined) {
    const sized = OpenAISizeSchema.safeParse(size)
    if (!sized.success) errors.push({ field: 'size', detail: sized.error.issues[0].message })
    else if (sized.data !== 'auto') {
      const [width, height] = sized.data.split('x').map(Number)
      Object.assign(rest, { width, height })
    }
  }
  if (errors.length) throwFieldErrors(errors)
  return { body: rest, fieldNames, extra: { responseFormat: format as OpenAIResponseFormat } }
}

/** Hugging Face text-to-image `parameters` → native field names (besides `target_size`). */
export const HF_PARAMETERS = Object.freeze({
  negative_prompt: 'negative_prompt',
  guidance_scale: 'guidance_scale',
  num_inference_steps: 'steps',
  width: 'width',
  height: 'height',
  seed: 'seed',
  scheduler: 'scheduler',
} as const)

/**
 * Translates a Hugging Face text-to-image task body, `{inputs, parameters?: {negative_prompt,
 * guidance_scale, num_inference_steps, width, height, target_size, seed, scheduler}}`.
 * `model` comes from the URL (`/models/<id>`) when the route has one; `options` (the legacy
 * `use_cache`/`wait_for_model`) is accepted and ignored.
 */
export function fromHuggingFace(body: unknown, model?: string): Translated {
  const fieldNames: Record<string, string> = { prompt: 'inputs' }
  for (const [hf, native] of Object.entries(HF_PARAMETERS)) fieldNames[native] = `parameters.${hf}`
  if (!isObject(body)) return { body, fieldNames, extra: {} }
  const errors: FieldError[] = []
  const out: Record<string, unknown> = { prompt: body.inputs, ...(model ? { model } : {}) }
  for (const k of Object.keys(body)) {
    if (!['inputs', 'parameters', 'options'].includes(k)) {
      errors.push({ field: k, detail: 'unknown field' })
    }
  }
  const params = body.parameters ?? {}
  if (!isObject(params)) {
    errors.push({ field: 'parameters', detail: 'must be an object' })
  } else {
    for (const [k, v] of Object.entries(params)) {
      if (k === 'target_size') {
        if (!isObject(v))
          errors.push({ field: 'parameters.target_size', detail: 'must be {width, height}' })
        else Object.assign(out, { width: v.width, height: v.height })
      } else if (Object.hasOwn(HF_PARAMETERS, k)) {
        // hasOwn: `in` also finds Object.prototype's members (`constructor`, `toString`).
        out[HF_PARAMETERS[k as keyof typeof HF_PARAMETERS]] = v
      } else {
        errors.push({ field: `parameters.${k}`, detail: 'unknown parameter' })
      }
    }
  }
  if (errors.length) throwFieldErrors(errors)
  return { body: out, fieldNames, extra: {} }
}

/**
 * Runs `fn`, renaming the fields of a `validation-error` it throws to the caller's names
 * (e.g. `steps` → `parameters.num_inference_steps`). Other errors pass through unchanged.
 */
export async function withCallerFieldNames<T>(
  fieldNames: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn()
  } catch (e) {
    if (!(e instanceof ProblemError) || e.slug !== 'validation-error') throw e
    const errors = (e.extensions.errors ?? []) as FieldError[]
    // Two native fields may share one caller field (width and height are both `size`): once.
    const seen = new Set<string>()
    const renamed = errors
      .map((f) => ({ ...f, field: fieldNames[f.field] ?? f.field }))
      .filter((f) => {
        const k = `${f.field}\0${f.detail}`
        return !seen.has(k) && seen.add(k)
      })
    throwFieldErrors(renamed)
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** OpenAI edit fields that have no meaning here and are accepted without effect. */
export const OPENAI_EDIT_IGNORED_FIELDS = Object.freeze([
  ...OPENAI_IGNORED_FIELDS,
  'background',
  'input_fidelity',
  'partial_images',
  'stream',
])

/**
 * Translates `POST /v1/images/edits` (multipart, as `openai.images.edit` sends it): `image`
 * (one picture; `image[]` with one entry too), `mask` as OpenAI defines it — fully transparent
 * pixels (alpha 0) mark where to edit, so it becomes a native mask, white there — or, without a
 * mask, the image's own transparency; `size`, `response_format` as for generations. Without any
 * transparency the edit is image-to-image of the whole picture.
 */
export async function fromOpenAIEdit(
  body: unknown,
): Promise<Translated<{ responseFormat: OpenAIResponseFormat }>> {
  if (!isObject(body)) return fromOpenAI(body)
  const { image: one, 'image[]': many, mask, ...rest } = body
  for (const k of OPENAI_EDIT_IGNORED_FIELDS) delete rest[k]
  const images = [one, ...(Array.isArray(many) ? many : many === undefined ? [] : [many])].filter(
    (v) => v !== undefined,
  )
  if (images.length !== 1)
    throwFieldErrors([
      {
        field: 'image',
        detail: images.length ? 'one image at a time is supported' : 'is required',
      },
    ])
  const translated = fromOpenAI(rest)
  const native = translated.body as Record<string, unknown>
  native.image = images[0]
  const source = mask ?? images[0]
  const transparent = await transparentArea(mask ? 'mask' : 'image', source)
  if (transparent) native.mask = transparent
  else if (mask !== undefined)
    throwFieldErrors([
      { field: 'mask', detail: 'has no transparent pixels; alpha 0 marks where to edit' },
    ])
  return translated
}

/**
 * The fully transparent pixels of a picture as a native mask PNG (white where alpha is 0), or
 * undefined when it has none. Decodes only Blobs and inline forms; a reference has no alpha.
 */
async function transparentArea(field: 'image' | 'mask', value: unknown): Promise<Blob | undefined> {
  const bytes =
    value instanceof Blob
      ? new Uint8Array(await value.arrayBuffer())
      : typeof value === 'string' && !/^[0-9a-f]{64}$/i.test(value) && !value.includes('/v1/')
        ? base64Bytes(value)
        : undefined
  if (!bytes) return undefined
  const picture = await decodePicture(field, bytes)
  if (!picture.alpha || !picture.alpha.includes(0)) return undefined
  const rgb = new Uint8Array(picture.width * picture.height * 3)
  picture.alpha.forEach((a, i) => rgb.fill(a === 0 ? 255 : 0, i * 3, i * 3 + 3))
  const png = encodePng({ width: picture.width, height: picture.height, data: rgb })
  return new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' })
}

/** The bytes of base64 text or a base64 `data:` URL (undefined if it is neither). */
function base64Bytes(text: string): Uint8Array | undefined {
  const b64 = text.startsWith('data:') ? text.slice(text.indexOf(',') + 1) : text
  try {
    return Uint8Array.from(atob(b64.replace(/\s+/g, '')), (ch) => ch.charCodeAt(0))
  } catch {
    return undefined
  }
}

/** Hugging Face image-to-image `parameters` → native names (besides `target_size`). */
export const HF_IMAGE_PARAMETERS = Object.freeze({
  ...HF_PARAMETERS,
  prompt: 'prompt',
  strength: 'strength',
} as const)

/** Whether a Hugging Face task body is image-to-image (its prompt is a parameter). */
export function isHuggingFaceImageToImage(body: unknown): boolean {
  return (
    isObject(body) &&
    (body.inputs instanceof Blob || (isObject(body.parameters) && 'prompt' in body.parameters))
  )
}

/**
 * Translates a Hugging Face image-to-image task body, `{inputs: <base64 picture>, parameters:
 * {prompt, negative_prompt, strength, guidance_scale, num_inference_steps, target_size, seed,
 * scheduler}}` (what `@huggingface/inference`'s `imageToImage` sends with parameters), or the
 * raw picture as the whole body (without parameters; the prompt is then empty).
 */
export function fromHuggingFaceImage(body: unknown, model?: string): Translated {
  const fieldNames: Record<string, string> = { image: 'inputs' }
  for (const [hf, native] of Object.entries(HF_IMAGE_PARAMETERS))
    fieldNames[native] = `parameters.${hf}`
  if (!isObject(body)) return { body, fieldNames, extra: {} }
  const errors: FieldError[] = []
  const out: Record<string, unknown> = {
    prompt: '',
    image: body.inputs,
    ...(model ? { model } : {}),
  }
  for (const k of Object.keys(body))
    if (!['inputs', 'parameters', 'options'].includes(k))
      errors.push({ field: k, detail: 'unknown field' })
  const params = body.parameters ?? {}
  if (!isObject(params)) errors.push({ field: 'parameters', detail: 'must be an object' })
  else
    for (const [k, v] of Object.entries(params)) {
      if (k === 'target_size') {
        if (!isObject(v))
          errors.push({ field: 'parameters.target_size', detail: 'must be {width, height}' })
        else Object.assign(out, { width: v.width, height: v.height })
      } else if (Object.hasOwn(HF_IMAGE_PARAMETERS, k)) {
        out[HF_IMAGE_PARAMETERS[k as keyof typeof HF_IMAGE_PARAMETERS]] = v
      } else errors.push({ field: `parameters.${k}`, detail: 'unknown parameter' })
    }
  if (errors.length) throwFieldErrors(errors)
  return { body: out, fieldNames, extra: {} }
}
