/**
 * @module
 * The training noise schedule and config handling that every scheduler shares: one place for
 * β schedules, ᾱ (alphas_cumprod), timestep spacing, the VP x̂_0/ε̂ conversion and config
 * validation, so schedulers only hold their solver. σ-space pieces live in `sigmas.ts`.
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

/**
 * `torch.linspace(start, end, n)` in float32, bit-exact with torch's CPU kernel (the reference
 * ran torch 1.13 with AVX2): the step is rounded to float32; 8-wide vector blocks cover the first
 * ⌊n/16⌋·16 values, each block starting from an fma off the nearer end (start below n/2, end
 * above) and adding k·step; the tail uses the scalar form. Matches all 1000 `sqrt_betas` of the
 * golden training schedule, where a plain double-precision linspace misses 344 by an ulp.
 */
export function linspaceF32(start: number, end: number, n: number): Float32Array {
  const f = Math.fround
  const out = new Float32Array(n)
  const s0 = f(start)
  const e0 = f(end)
  if (n === 1) {
    out[0] = s0
    return out
  }
  const step = f((e0 - s0) / (n - 1))
  const half = n / 2
  // fma(a, b, c) rounded once to float32: a·b + c is exact in double for these magnitudes.
  const from = (i: number) => (i < half ? f(step * i + s0) : f(-step * (n - i - 1) + e0))
  const vectorEnd = Math.floor(n / 16) * 16
  for (let b = 0; b < vectorEnd; b += 8) {
    const base = from(b)
    for (let k = 0; k < 8; k++) out[b + k] = f(base + k * step)
  }
  for (let i = vectorEnd; i < n; i++) out[i] = from(i)
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

/**
 * ᾱ_t from a scheduler config: the training β (`betasFromConfig`), rescaled to zero terminal SNR
 * when `rescale_betas_zero_snr` is set (Lin et al. 2023, Algorithm 1), then cumulated.
 */
export function alphasCumprodFromConfig(
  config: Parameters<typeof betasFromConfig>[0] & { rescale_betas_zero_snr?: boolean },
): Float32Array {
  let betas = betasFromConfig(config)
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas)
  return alphasCumprod(betas)
}

/**
 * diffusers' `final_alpha_cumprod`, the ᾱ used past the last step: 1 with `set_alpha_to_one` (as in
 * the DDIM paper), else ᾱ_0 (SD's configs).
 */
export function finalAlphaCumprod(setAlphaToOne: boolean, alphasCumprod: Float32Array): number {
  return setAlphaToOne ? 1 : alphasCumprod[0]
}

/**
 * x̂_0 (when `toX0`) or ε̂ from a model output on the VP schedule x_t = α_t·x_0 + σ_t·ε (DDPM/DDIM's
 * α = √ᾱ_t, σ = √(1 − ᾱ_t); Ho et al. eq. 15, DDIM eq. 9, DPM-Solver++ eq. 9): x̂_0 = (x − σ·ε̂)/α,
 * ε̂ = (x − α·x̂_0)/σ; v-prediction uses x̂_0 = α·x − σ·v, ε̂ = α·v + σ·x (Salimans & Ho 2022).
 */
export function vpConvertModelOutput(
  predictionType: string,
  toX0: boolean,
  m: Float32Array,
  x: Float32Array,
  alpha: number,
  sigma: number,
): Float32Array {
  const f = Math.fround
  const pt = predictionType
  const out = new Float32Array(m.length)
  if (toX0) {
    for (let k = 0; k < m.length; k++) {
      if (pt === 'epsilon') out[k] = f(f(x[k] - f(sigma * m[k])) / alpha)
      else if (pt === 'v_prediction') out[k] = f(f(alpha * x[k]) - f(sigma * m[k]))
      else out[k] = m[k]
    }
  } else {
    for (let k = 0; k < m.length; k++) {
      if (pt === 'epsilon') out[k] = m[k]
      else if (pt === 'v_prediction') out[k] = f(f(alpha * m[k]) + f(sigma * x[k]))
      else out[k] = f(f(x[k] - f(alpha * m[k])) / sigma)
    }
  }
  return out
}

/** Clamps x̂_0 to ±`range` in place (diffusers' `clip_sample`), returning it. */
export function clipSample(x0: Float32Array, range: number): Float32Array {
  for (let k = 0; k < x0.length; k++) x0[k] = Math.min(range, Math.max(-range, x0[k]))
  return x0
}

/** ᾱ at an integer timestep; negative indices wrap like the torch indexing diffusers does. */
export function alphaCumprodAt(className: string, alphasCumprod: Float32Array, t: number): number {
  const a = alphasCumprod
  if (!Number.isInteger(t) || t >= a.length || t < -a.length) {
    throw new SchedulerError(`${className}: timestep ${t} is not a training timestep`)
  }
  return a.at(t) as number
}

/** Rejects `thresholding` (Saharia et al. 2022's dynamic thresholding needs the batch shape). */
export function checkNoThresholding(className: string, c: { thresholding?: boolean }): void {
  if (c.thresholding) {
    throw new SchedulerError(`${className}: thresholding needs the batch shape; not supported`)
  }
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

/**
 * Rescales β so the terminal SNR is zero (Lin et al. 2023, "Common Diffusion Noise Schedules and
 * Sample Steps Are Flawed", Algorithm 1), in float32 like diffusers' `rescale_zero_terminal_snr`.
 */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const f = Math.fround
  const sqrtBar = alphasCumprod(betas).map((v) => f(Math.sqrt(v)))
  const a0 = sqrtBar[0]
  const aT = sqrtBar[sqrtBar.length - 1]
  const scale = f(a0 / f(a0 - aT))
  const bar = sqrtBar.map((v) => {
    const s = f(f(v - aT) * scale)
    return f(s * s)
  })
  const out = new Float32Array(betas.length)
  out[0] = f(1 - bar[0])
  for (let i = 1; i < bar.length; i++) out[i] = f(1 - f(bar[i] / bar[i - 1]))
  return out
}

/** σ_t = sqrt((1 − ᾱ_t) / ᾱ_t) for every training step, in float32 as torch computes it. */
export function trainSigmas(alphasCumprod: Float32Array): Float32Array {
  const f = Math.fround
  return alphasCumprod.map((a) => f(Math.sqrt(f(f(1 - a) / a))))
}

/** Rounds half to even, like numpy's `np.round` (Math.round rounds half up). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x)
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/** `np.linspace(start, stop, n)` in float64, computed the way numpy does (`i * step + start`). */
export function linspaceF64(start: number, stop: number, n: number): Float64Array {
  const out = new Float64Array(n)
  const step = (stop - start) / (n - 1)
  for (let i = 0; i < n; i++) out[i] = n === 1 ? start : i * step + start
  if (n > 1) out[n - 1] = stop
  return out
}

/**
 * `np.arange(start, stop, step)` in float64, with numpy's length `ceil((stop − start) / step)` and
 * fill `start + i·(x₁ − x₀)`. NOTE: like numpy it can yield one extra element for some float steps
 * (e.g. `arange(1000, 0, -1000/61)`); diffusers inherits that, and so do we.
 */
export function arangeF64(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step))
  const out = new Float64Array(n)
  if (n > 0) out[0] = start
  if (n > 1) out[1] = start + step
  const delta = start + step - start
  for (let i = 2; i < n; i++) out[i] = start + i * delta
  return out
}

/**
 * The inference timesteps for a `timestep_spacing` (Lin et al. 2023, Table 2), descending, as
 * float64 before any dtype cast: `leading` is `i·⌊T/n⌋ + steps_offset`, `trailing` is
 * `round(arange(T, 0, −T/n)) − 1`, `linspace` is `linspace(0, T − 1, n)` left unrounded (DDIM-like
 * schedulers round it half-to-even, sigma schedulers cast it to float32).
 */
export function spacedTimesteps(
  spacing: string,
  n: number,
  numTrainTimesteps: number,
  stepsOffset: number,
): number[] {
  const T = numTrainTimesteps
  switch (spacing) {
    case 'linspace':
      return Array.from(linspaceF64(0, T - 1, n)).reverse()
    case 'leading': {
      const ratio = Math.floor(T / n)
      return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset)
    }
    case 'trailing':
      return Array.from(arangeF64(T, 0, -T / n), (v) => roundHalfEven(v) - 1)
    default:
      throw new SchedulerError(`unknown timestep_spacing ${JSON.stringify(spacing)}`)
  }
}

/**
 * `spacedTimesteps` as the integer-timestep schedulers (DDIM, DDPM, PNDM) use it: `linspace`
 * values rounded half-to-even, like diffusers' `.round()` before the int64 cast.
 */
export function integerSpacedTimesteps(
  spacing: string,
  n: number,
  numTrainTimesteps: number,
  stepsOffset: number,
): number[] {
  const ts = spacedTimesteps(spacing, n, numTrainTimesteps, stepsOffset)
  return spacing === 'linspace' ? ts.map(roundHalfEven) : ts
}

/**
 * `np.interp(x, arange(len(fp)), fp)`: piecewise-linear interpolation on the integer grid, clamped
 * at both ends, in float64 like numpy.
 */
export function interpOnIndex(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1
  if (!(x > 0)) return fp[0]
  if (x >= last) return fp[last]
  const j = Math.floor(x)
  if (j === x) return fp[j]
  const slope = fp[j + 1] - fp[j]
  return slope * (x - j) + fp[j]
}

/**
 * Karras et al. 2022, eq. 5: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7,
 * in float64 like diffusers' `_convert_to_karras`.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): Float64Array {
  const ramp = linspaceF64(0, 1, n)
  const minInv = sigmaMin ** (1 / rho)
  const maxInv = sigmaMax ** (1 / rho)
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho)
}

/**
 * The fractional training timestep of σ: linear interpolation of log σ between the two
 * neighbouring training log-sigmas (diffusers' `_sigma_to_t`). `logSigmas` is float32 and
 * ascending, as `np.log` of the float32 training sigmas.
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10))
  let low = 0
  for (let i = 0; i < logSigmas.length; i++) if (logSigmas[i] <= logSigma) low = i
  low = Math.min(low, logSigmas.length - 2)
  const lo = logSigmas[low]
  const hi = logSigmas[low + 1]
  const w = Math.min(1, Math.max(0, (lo - logSigma) / Math.fround(lo - hi)))
  return (1 - w) * low + w * (low + 1)
}

/**
 * diffusers' `index_for_timestep`: the position of `t` in `timesteps`, taking the second match when
 * there are two (so a schedule that starts mid-way does not skip a sigma). Throws if `t` is absent.
 */
export function indexForTimestep(timesteps: readonly number[], t: number): number {
  const hits: number[] = []
  for (let i = 0; i < timesteps.length && hits.length < 2; i++) if (timesteps[i] === t) hits.push(i)
  if (hits.length === 0) throw new SchedulerError(`timestep ${t} is not in the schedule`)
  return hits.length > 1 ? hits[1] : hits[0]
}

/** A defaults object's type with its literals widened (`'leading'` → `string`): a resolved config's type. */
export type Widen<T> = {
  [K in keyof T]: T[K] extends string
    ? string
    : T[K] extends number
      ? number
      : T[K] extends boolean
        ? boolean
        : T[K]
}

/**
 * diffusers' `add_noise` for ᾱ-parameterised schedulers (DDPM, DDIM, PNDM, LCM): the forward
 * process q(x_t | x_0) = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε (Ho et al. 2020, eq. 4), in float32.
 */
export function vpAddNoise(
  className: string,
  alphasCumprod: Float32Array,
  original: Float32Array,
  noise: Float32Array,
  t: number,
): Float32Array {
  const f = Math.fround
  const a = alphaCumprodAt(className, alphasCumprod, t)
  const sqA = f(Math.sqrt(a))
  const sqB = f(Math.sqrt(f(1 - a)))
  const out = new Float32Array(original.length)
  for (let k = 0; k < out.length; k++) out[k] = f(f(sqA * original[k]) + f(sqB * noise[k]))
  return out
}

/**
 * Which schedule index `add_noise` takes on a scheduler with `set_begin_index` (diffusers' rule):
 * without a begin index, the index of `t`; before the first step, the begin index (image-to-image
 * noises the init latents there); after a step, the current step index (inpainting re-noises the
 * known region after each step).
 */
export function addNoiseIndex(
  beginIndex: number | null,
  stepIndex: number | null,
  lookup: () => number,
): number {
  if (beginIndex === null) return lookup()
  return stepIndex ?? beginIndex
}

/** Checks a `set_begin_index` argument against the schedule length. */
export function checkBeginIndex(className: string, index: number, length: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= length)
    throw new SchedulerError(`${className}: begin index ${index} is outside 0..${length - 1}`)
  return index
}
