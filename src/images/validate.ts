/**
 * @module
 * Turns a POST /v1/images body into a `GenerateRequest`: unknown fields rejected, defaults taken
 * from the model, bounds from its limits, prompts tokenized once (for the window check and the
 * cache key), and a random seed drawn when none is given.
 */
import type {
  GenerateRequest,
  ModelInfo,
  TextToImageEngine,
  TokenizedPrompt,
} from '../gpu/engine-types'
import { ProblemError, throwFieldErrors, type FieldError } from '../problem'

/** The fields POST /v1/images accepts. */
export const IMAGE_REQUEST_FIELDS = Object.freeze([
  'prompt',
  'negative_prompt',
  'seed',
  'steps',
  'guidance_scale',
  'width',
  'height',
  'scheduler',
  'model',
  'n',
  'output_format',
  'truncate',
] as const)

/** Largest seed: seeds are unsigned 32-bit (image i of a request uses seed + i). */
export const MAX_SEED = 2 ** 32 - 1

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
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throwFieldErrors([{ field: '(body)', detail: 'must be a JSON object' }])
  }
  const b = body as Record<string, unknown>
  const errors: FieldError[] = []
  for (const k of Object.keys(b)) {
    if (!(IMAGE_REQUEST_FIELDS as readonly string[]).includes(k)) {
      errors.push({ field: k, detail: 'unknown field' })
    }
  }

  const models = engine.models()
  const modelId = b.model ?? models[0]?.id
  const model = models.find((m) => m.id === modelId)
  if (!model) {
    errors.push({ field: 'model', detail: `must be one of ${models.map((m) => m.id).join(', ')}` })
    throwFieldErrors(errors)
  }
  const { defaults: d, limits: l } = model

  const str = (k: string, fallback?: string): string => {
    const v = b[k] ?? fallback
    if (typeof v === 'string') return v
    errors.push({ field: k, detail: v === undefined ? 'is required' : 'must be a string' })
    return ''
  }
  const num = (k: string, fallback: number, min: number, max: number, integer: boolean) => {
    const v = b[k] ?? fallback
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      errors.push({ field: k, detail: `must be ${integer ? 'an integer' : 'a number'}` })
    } else if (v < min || v > max) {
      errors.push({ field: k, detail: `must be between ${min} and ${max}` })
    }
    return v as number
  }
  const size = (k: 'width' | 'height', fallback: number, max: number) => {
    const v = num(k, fallback, l.sizeMultiple, max, true)
    if (Number.isInteger(v) && v % l.sizeMultiple !== 0) {
      errors.push({ field: k, detail: `must be a multiple of ${l.sizeMultiple}` })
    }
    return v
  }

  const prompt = str('prompt')
  const negativePrompt = str('negative_prompt', '')
  const n = num('n', 1, 1, l.maxImages, true)
  const steps = num('steps', d.steps, l.minSteps, l.maxSteps, true)
  const guidanceScale = num('guidance_scale', d.guidance_scale, l.minGuidance, l.maxGuidance, false)
  const width = size('width', d.width, l.maxWidth)
  const height = size('height', d.height, l.maxHeight)
  const scheduler = str('scheduler', d.scheduler)
  if (typeof b.scheduler === 'string' && !acceptsScheduler(model, scheduler)) {
    errors.push({ field: 'scheduler', detail: `must be one of ${model.schedulers.join(', ')}` })
  }
  const truncate = b.truncate ?? false
  if (typeof truncate !== 'boolean') errors.push({ field: 'truncate', detail: 'must be a boolean' })
  if (b.output_format !== undefined && b.output_format !== 'png') {
    errors.push({ field: 'output_format', detail: 'must be "png"' })
  }
  const seedDrawn = b.seed === undefined
  const lastSeed = MAX_SEED - (Number.isInteger(n) && n >= 1 ? n - 1 : 0)
  const seed = seedDrawn ? randomSeed(lastSeed) : num('seed', 0, 0, lastSeed, true)
  if (errors.length) throwFieldErrors(errors)

  const tokens = {
    prompt: checkWindow(engine.tokenize(model.id, prompt), 'prompt', model, truncate as boolean),
    negative: checkWindow(
      engine.tokenize(model.id, negativePrompt),
      'negative_prompt',
      model,
      truncate as boolean,
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
    truncate: truncate as boolean,
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
