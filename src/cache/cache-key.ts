/**
 * @module
 * The cache key: SHA-256 of a canonical request holding every input that changes the output,
 * with defaults filled in. Prompts enter as the token ids the model receives, so two prompts
 * share an entry exactly when the text encoder sees the same input.
 */
import type { GenerateRequest, ModelInfo, TokenizedPrompt } from '../engine/types'
import { SCHEDULER_ALIASES } from '../pipeline/schedulers'
import { sha256Hex } from '../util'

/**
 * Version of everything between the request and the pixels that the model digest does not
 * cover (pipeline loop, schedulers, PNG encoding). Bump it whenever outputs change.
 * 2: PNGs record the prompt text the model saw (v1 recorded the request's, beyond truncation).
 * (Pictures joined the key as new fields, so text-only keys kept their version.)
 */
export const PIPELINE_VERSION = 2

/** The canonical form that is hashed into a request key. Field order is fixed. */
export interface CanonicalRequest {
  v: number
  model: string
  digest: string
  promptIds: number[]
  negativeIds: number[]
  seed: number
  n: number
  steps: number
  guidance: number
  width: number
  height: number
  scheduler: { className: string; overrides: Record<string, unknown> }
  format: 'png'
  /** The request's non-default generation options, keys sorted; absent when there are none. */
  options?: Record<string, unknown>
  /** The sha256 of each input picture's file, by field; absent without pictures. */
  pictures?: Record<string, string>
  /** The API key id under a per-key cache scope; absent when the cache is shared. */
  scope?: string
}

/**
 * Resolves a scheduler name to what the pipeline builds from it, so `euler` and
 * `EulerDiscreteScheduler` (or `pndm` and `plms`) key the same.
 */
export function canonicalScheduler(name: string): CanonicalRequest['scheduler'] {
  const alias = SCHEDULER_ALIASES[name.toLowerCase()]
  if (!alias) return { className: name, overrides: {} }
  const overrides = alias.overrides ?? {}
  return {
    className: alias.className,
    overrides: Object.fromEntries(
      Object.keys(overrides)
        .sort()
        .map((k) => [k, overrides[k]]),
    ),
  }
}

/**
 * Builds the canonical request of a resolved generation request; `tokens` are both prompts as
 * `engine.tokenize` returned them (after any truncation, so `truncate` itself needs no field).
 */
export function canonicalRequest(
  model: ModelInfo,
  req: GenerateRequest,
  tokens: { prompt: TokenizedPrompt; negative: TokenizedPrompt },
  scope?: string,
): CanonicalRequest {
  return {
    v: PIPELINE_VERSION,
    model: model.id,
    digest: model.digest,
    promptIds: tokens.prompt.inputIds,
    negativeIds: tokens.negative.inputIds,
    seed: req.seed,
    n: req.n,
    steps: req.steps,
    guidance: req.guidanceScale,
    width: req.width,
    height: req.height,
    scheduler: canonicalScheduler(req.scheduler),
    format: 'png',
    ...(Object.keys(req.options).length ? { options: sortedKeys(req.options) } : {}),
    ...(req.pictures && Object.keys(req.pictures).length
      ? {
          pictures: sortedKeys(
            Object.fromEntries(Object.entries(req.pictures).map(([k, p]) => [k, p.sha256])),
          ) as Record<string, string>,
        }
      : {}),
    ...(scope ? { scope } : {}),
  }
}

function sortedKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)))
}

/** The request key: lowercase hex SHA-256 of the canonical request's JSON. */
export function requestKey(canonical: CanonicalRequest): Promise<string> {
  return sha256Hex(JSON.stringify(canonical))
}
