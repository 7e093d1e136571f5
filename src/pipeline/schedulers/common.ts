/**
 * @module
 * The training noise schedule and config handling that every scheduler shares: one place for
 * β schedules, ᾱ (alphas_cumprod) and config validation, so schedulers only hold their solver.
 */
import type { SchedulerConfig } from './types'

/** Keys every scheduler accepts, with the diffusers defaults (SD 1.x training schedule). */
export const BASE_DEFAULTS = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null as number[] | null,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
})

/** The prediction types a scheduler can convert to x̂_0. */
export const PREDICTION_TYPES = Object.freeze(['epsilon', 'v_prediction', 'sample'] as const)
/** The `timestep_spacing` values diffusers defines (Table 2 of Lin et al. 2023, "Common Diffusion Noise Schedules…"). */
export const TIMESTEP_SPACINGS = Object.freeze(['leading', 'trailing', 'linspace'] as const)

/** Error thrown for a config or call that a scheduler cannot honour. */
export class SchedulerError extends Error {
  override name = 'SchedulerError'
}

/**
 * Merges `config` over `defaults`, keeping only keys in `defaults` (like diffusers' `from_config`,
 * which ignores keys a class does not accept) and validating the shared ones.
 */
export function resolveConfig<T extends Record<string, unknown>>(
  defaults: T,
  config: SchedulerConfig = {},
): Readonly<T> {
  const out: Record<string, unknown> = { ...defaults }
  for (const [k, v] of Object.entries(config)) {
    if (k in defaults && v !== undefined) out[k] = v
  }
  const pt = out.prediction_type
  if (pt !== undefined && !(PREDICTION_TYPES as readonly unknown[]).includes(pt)) {
    throw new SchedulerError(
      `unknown prediction_type ${JSON.stringify(pt)}; expected one of ${PREDICTION_TYPES.join(', ')}`,
    )
  }
  const ts = out.timestep_spacing
  if (ts !== undefined && !(TIMESTEP_SPACINGS as readonly unknown[]).includes(ts)) {
    throw new SchedulerError(
      `unknown timestep_spacing ${JSON.stringify(ts)}; expected one of ${TIMESTEP_SPACINGS.join(', ')}`,
    )
  }
  const n = out.num_train_timesteps
  if (n !== undefined && (!Number.isInteger(n) || (n as number) < 1)) {
    throw new SchedulerError(`num_train_timesteps must be a positive integer, got ${String(n)}`)
  }
  return Object.freeze(out) as Readonly<T>
}

/** `torch.linspace(start, end, n)` in float32, as torch computes it (step from both ends). */
export function linspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n)
  if (n === 1) {
    out[0] = start
    return out
  }
  const step = (end - start) / (n - 1)
  const half = Math.floor(n / 2)
  for (let i = 0; i < n; i++) out[i] = i < half ? start + step * i : end - step * (n - 1 - i)
  return out
}

/** Cosine β schedule (Nichol & Dhariwal 2021, eq. 17), `betas_for_alpha_bar` in diffusers. */
function cosineBetas(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta)
  }
  return out
}

/** The training β_t as diffusers builds them from `beta_schedule` (float32, length T). */
export function betasFromConfig(config: {
  num_train_timesteps: number
  beta_start: number
  beta_end: number
  beta_schedule: string
  trained_betas?: readonly number[] | null
}): Float32Array {
  const { num_train_timesteps: n, beta_start: b0, beta_end: b1, beta_schedule: kind } = config
  if (config.trained_betas) return Float32Array.from(config.trained_betas)
  switch (kind) {
    case 'linear':
      return linspaceF32(b0, b1, n)
    case 'scaled_linear': {
      const s = linspaceF32(Math.sqrt(b0), Math.sqrt(b1), n)
      return s.map((v) => Math.fround(v * v))
    }
    case 'squaredcos_cap_v2':
      return cosineBetas(n)
    default:
      throw new SchedulerError(`unsupported beta_schedule ${JSON.stringify(kind)}`)
  }
}

/**
 * ᾱ_t = ∏ (1 − β_s) in float32. torch's float32 cumprod equals a float64 running product of the
 * float32 alphas, rounded to float32 at each output (golden train_schedule.json).
 */
export function alphasCumprod(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length)
  let acc = 1
  for (let i = 0; i < betas.length; i++) {
    acc *= Math.fround(1 - betas[i])
    out[i] = acc
  }
  return out
}

/** Validates a step count, the one check every `setTimesteps` shares. */
export function checkNumInferenceSteps(n: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new SchedulerError(`num_inference_steps must be a positive integer, got ${n}`)
  }
  if (n > numTrainTimesteps) {
    throw new SchedulerError(
      `num_inference_steps (${n}) cannot exceed num_train_timesteps (${numTrainTimesteps})`,
    )
  }
}
