/**
 * @module
 * Turns a POST /v1/images body into a `GenerateRequest`. The body's structure (types, unknown
 * fields, floors) is checked by the `ImageRequest` schema, the same one the OpenAPI document
 * shows; then defaults are taken from the model, bounds from its limits, prompts tokenized once
 * (for the window check and the cache key), and a random seed drawn when none is given. Every
 * invalid field, structural or model-dependent, is reported in one 422.
 */
import type {
  GenerateRequest,
  InputPicture,
  ModelInfo,
  PictureField,
  TextToImageEngine,
  TokenizedPrompt,
} from '../engine/types'
import {
  OPTION_DEFAULTS,
  OPTION_NAMES,
  PICTURE_OPTIONS,
  type GenerationOptionValues,
} from '../engine/options'
import { createScheduler, SchedulerError } from '../pipeline/schedulers'
import { ProblemError, throwFieldErrors, type FieldError } from '../problem'
import { fieldErrors } from '../schema'
import {
  IMAGE_FIELD_FLOORS,
  ImageRequest,
  MAX_SEED,
  MODEL_BOUNDED_FIELDS,
  type ImageRequestBody,
} from './schema'
import type { Variant } from './formats'
import { outputVariant } from './variants'

/** Largest seed (defined with the schema; re-exported for this module's importers). */
export { MAX_SEED }

/** The fields POST /v1/images accepts. */
export const IMAGE_REQUEST_FIELDS = Object.freeze(
  Object.keys(ImageRequest.shape) as (keyof ImageRequestBody)[],
)

/** A validated request with its model and the token ids of both prompts. */
export interface ResolvedRequest {
  model: ModelInfo
  req: GenerateRequest
  tokens: { prompt: TokenizedPrompt; negative: TokenizedPrompt }
  /** Whether the seed was drawn here (the response reports it). */
  seedDrawn: boolean
  /** The form the answer takes (`output_format`, `output_compression`); not part of the key. */
  output: Variant
  /** Where a job's outcome is delivered (`webhook_url`); not part of the key. */
  webhookUrl?: string
}

/** The pictures of a request, decoded (`./request-pictures`), by field. */
export type RequestPictures = Partial<Record<PictureField, InputPicture>>

/**
 * Validates a body against the engine's models; throws a 422 problem on any invalid field.
 * `pictures` are the body's picture fields, already decoded: their sizes set the output size.
 */
export function resolveRequest(
  body: unknown,
  engine: Pick<TextToImageEngine, 'models' | 'tokenize'>,
  pictures: RequestPictures = {},
): ResolvedRequest {
  const parsed = ImageRequest.safeParse(body)
  // Range issues of model-bounded fields are left to the model check below, whose range lies
  // inside the schema's (see IMAGE_FIELD_FLOORS) and whose message names the model's bounds.
  const errors: FieldError[] = parsed.success
    ? []
    : fieldErrors(
        parsed.error.issues.filter(
          (i) =>
            !(
              (i.code === 'too_small' || i.code === 'too_big') &&
              (MODEL_BOUNDED_FIELDS as readonly PropertyKey[]).includes(i.path[0])
            ),
        ),
      )
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throwFieldErrors(errors)
  // Fields with no error so far have the schema's types, whether or not the whole body parsed.
  const invalid = new Set(errors.map((e) => e.field))
  const b = body as ImageRequestBody
  const ok = <K extends keyof ImageRequestBody>(k: K) => (invalid.has(k) ? undefined : b[k])

  const models = engine.models()
  const modelId = ok('model') ?? models[0]?.id
  const model = models.find((m) => m.id === modelId)
  if (!model) {
    if (!invalid.has('model')) {
      errors.push({
        field: 'model',
        detail: `must be one of ${models.map((m) => m.id).join(', ')}`,
      })
    }
    throwFieldErrors(errors)
  }
  const { defaults: d, limits: l } = model

  const range = (
    k: (typeof MODEL_BOUNDED_FIELDS)[number],
    fallback: number,
    min: number,
    max: number,
  ) => {
    const v = ok(k) ?? fallback
    const lo = Math.max(min, IMAGE_FIELD_FLOORS[k])
    if (!invalid.has(k) && (v < lo || v > max)) {
      errors.push({ field: k, detail: `must be between ${lo} and ${max}` })
    }
    return v
  }
  const size = (k: 'width' | 'height', fallback: number, max: number) => {
    const v = range(k, fallback, l.sizeMultiple, max)
    if (!invalid.has(k) && v % l.sizeMultiple !== 0) {
      errors.push({ field: k, detail: `must be a multiple of ${l.sizeMultiple}` })
    }
    return v
  }

  const prompt = ok('prompt') ?? ''
  const negativePrompt = ok('negative_prompt') ?? ''
  const n = range('n', 1, 1, l.maxImages)
  const steps = range('steps', d.steps, l.minSteps, l.maxSteps)
  const guidanceScale = range('guidance_scale', d.guidance_scale, l.minGuidance, l.maxGuidance)
  // A picture sets the output size: width and height may only repeat it.
  const picture = pictures.image ?? pictures.control_image
  const pictureField = pictures.image ? 'image' : 'control_image'
  for (const k of ['width', 'height'] as const) {
    const given = ok(k)
    if (picture && given !== undefined && given !== picture[k]) {
      errors.push({
        field: k,
        detail: `must equal the ${pictureField}'s ${k} (${picture[k]}) or be left out`,
      })
      invalid.add(k)
    }
  }
  // An unsuitable picture size is the picture's error (below), not one of absent fields.
  const width =
    picture && ok('width') === undefined ? picture.width : size('width', d.width, l.maxWidth)
  const height =
    picture && ok('height') === undefined ? picture.height : size('height', d.height, l.maxHeight)
  errors.push(...pictureErrors(model, pictures, width, height, invalid))
  const scheduler = ok('scheduler') ?? d.scheduler
  if (ok('scheduler') !== undefined && !acceptsScheduler(model, scheduler)) {
    errors.push({ field: 'scheduler', detail: `must be one of ${model.schedulers.join(', ')}` })
  }
  if (
    !invalid.has('steps') &&
    model.schedulerConfig &&
    acceptsScheduler(model, scheduler) &&
    !errors.some((e) => e.field === 'steps')
  ) {
    const problem = schedulerProblem(model, scheduler, steps)
    if (problem) errors.push({ field: 'steps', detail: problem })
  }
  const truncate = ok('truncate') ?? false
  const output = outputVariant(ok('output_format'), ok('output_compression'))
  if (!invalid.has('output_format') && !invalid.has('output_compression'))
    errors.push(...output.errors)
  const options: GenerationOptionValues = {}
  for (const name of OPTION_NAMES) {
    const v = ok(name)
    if (v === undefined) continue
    const needs = PICTURE_OPTIONS[name as keyof typeof PICTURE_OPTIONS]
    if (needs && !pictures[needs]) {
      errors.push({ field: name, detail: `needs ${needs}` })
      continue
    }
    if (v === OPTION_DEFAULTS[name]) continue
    if (!model.options.includes(name))
      errors.push({ field: name, detail: `is not supported by model ${model.id}` })
    else (options as Record<string, unknown>)[name] = v
  }
  const controlStart = options.control_start ?? OPTION_DEFAULTS.control_start!
  const controlEnd = options.control_end ?? OPTION_DEFAULTS.control_end!
  if (pictures.control_image && controlStart >= controlEnd)
    errors.push({ field: 'control_start', detail: 'must be below control_end' })
  // `strength` runs ⌊steps · strength⌋ steps (diffusers' `get_timesteps`): at least one.
  if (options.strength !== undefined && Math.floor(steps * options.strength) < 1)
    errors.push({
      field: 'strength',
      detail: `${options.strength} of ${steps} steps runs none; steps × strength must be at least 1`,
    })
  const seedDrawn = b.seed === undefined
  const lastSeed = MAX_SEED - Math.max(0, n - 1)
  const seed = seedDrawn ? randomSeed(lastSeed) : range('seed', 0, 0, lastSeed)
  if (errors.length) throwFieldErrors(errors)

  const tokens = {
    prompt: checkWindow(engine.tokenize(model.id, prompt), 'prompt', model, truncate),
    negative: checkWindow(
      engine.tokenize(model.id, negativePrompt),
      'negative_prompt',
      model,
      truncate,
    ),
  }
  const req: GenerateRequest = {
    model: model.id,
    prompt,
    negativePrompt,
    seed,
    steps,
    guidanceScale,
    width,
    height,
    scheduler,
    n,
    truncate,
    options,
    ...(Object.keys(pictures).length ? { pictures } : {}),
  }
  const webhookUrl = ok('webhook_url')
  return {
    model,
    req,
    tokens,
    seedDrawn,
    output: output.variant,
    ...(webhookUrl !== undefined ? { webhookUrl } : {}),
  }
}

/**
 * What the model cannot take of the pictures, and pictures that do not fit: each error names
 * its field. Every picture must have the output's size, which must suit the model.
 */
function pictureErrors(
  model: ModelInfo,
  pictures: RequestPictures,
  width: number,
  height: number,
  invalid: Set<string>,
): FieldError[] {
  const errors: FieldError[] = []
  if (!pictures.image && model.conditioning.text !== true)
    errors.push({
      field: 'image',
      detail: `is required by model ${model.id}: ${model.conditioning.text}`,
    })
  if (pictures.mask && !pictures.image)
    errors.push({ field: 'mask', detail: 'needs image, the picture it applies to' })
  const { sizeMultiple: m, maxWidth, maxHeight } = model.limits
  for (const field of ['image', 'mask', 'control_image'] as const) {
    const pic = pictures[field]
    if (!pic) continue
    const can = model.conditioning[field]
    if (can !== true) {
      errors.push({ field, detail: `is not supported by model ${model.id}: ${can}` })
      continue
    }
    if (pic.width % m || pic.height % m || pic.width > maxWidth || pic.height > maxHeight)
      errors.push({
        field,
        detail: `is ${pic.width}x${pic.height}; model ${model.id} needs sides that are multiples of ${m}, at most ${maxWidth}x${maxHeight}`,
      })
    else if (
      !invalid.has('width') &&
      !invalid.has('height') &&
      (pic.width !== width || pic.height !== height)
    )
      errors.push({
        field,
        detail: `is ${pic.width}x${pic.height} but the output is ${width}x${height}; every picture must have the same size`,
      })
  }
  return errors
}

/** Why the scheduler cannot run `steps` steps on this model (its own checks), if it cannot. */
function schedulerProblem(model: ModelInfo, name: string, steps: number): string | undefined {
  try {
    createScheduler(name, model.schedulerConfig).setTimesteps(steps)
  } catch (e) {
    if (e instanceof SchedulerError) return `${e.message} (scheduler ${name})`
    throw e
  }
  return undefined
}

function acceptsScheduler(model: ModelInfo, name: string): boolean {
  return model.schedulers.includes(name) || model.schedulers.includes(name.toLowerCase())
}

function checkWindow(
  t: TokenizedPrompt,
  field: string,
  model: ModelInfo,
  truncate: boolean,
): TokenizedPrompt {
  if (t.nTokens > model.maxPromptTokens && !truncate) {
    throw new ProblemError('prompt-too-long', {
      detail: `${field} has ${t.nTokens} tokens; the limit of model ${model.id} is ${model.maxPromptTokens} (send "truncate": true to cut it)`,
      extensions: { field, tokens: t.nTokens, limit: model.maxPromptTokens },
    })
  }
  return t
}

function randomSeed(max: number): number {
  const [x] = crypto.getRandomValues(new Uint32Array(1))
  return x % (max + 1)
}
