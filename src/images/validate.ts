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
  ModelInfo,
  TextToImageEngine,
  TokenizedPrompt,
} from '../engine/types'
import { OPTION_DEFAULTS, OPTION_NAMES, type GenerationOptionValues } from '../engine/options'
import { ProblemError, throwFieldErrors, type FieldError } from '../problem'
import { fieldErrors } from '../schema'
import {
  IMAGE_FIELD_FLOORS,
  ImageRequest,
  MAX_SEED,
  MODEL_BOUNDED_FIELDS,
  type ImageRequestBody,
} from './schema'

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
}

/** Validates a body against the engine's models; throws a 422 problem on any invalid field. */
export function resolveRequest(
  body: unknown,
  engine: Pick<TextToImageEngine, 'models' | 'tokenize'>,
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
  const width = size('width', d.width, l.maxWidth)
  const height = size('height', d.height, l.maxHeight)
  const scheduler = ok('scheduler') ?? d.scheduler
  if (ok('scheduler') !== undefined && !acceptsScheduler(model, scheduler)) {
    errors.push({ field: 'scheduler', detail: `must be one of ${model.schedulers.join(', ')}` })
  }
  const truncate = ok('truncate') ?? false
  const options: GenerationOptionValues = {}
  for (const name of OPTION_NAMES) {
    const v = ok(name)
    if (v === undefined || v === OPTION_DEFAULTS[name]) continue
    if (!model.options.includes(name))
      errors.push({ field: name, detail: `is not supported by model ${model.id}` })
    else options[name] = v
  }
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
  }
  return { model, req, tokens, seedDrawn }
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
