/**
 * @module
 * Linear multistep sampler (k-diffusion's `sample_lms`, Karras et al. 2022 σ-parameterisation), a
 * port of diffusers' `LMSDiscreteScheduler`. The probability-flow ODE dx/dσ = d(x, σ) is integrated
 * with an Adams–Bashforth-style formula: the last `order` derivatives are extrapolated by their
 * Lagrange polynomial in σ, integrated over [σ_i, σ_{i+1}].
 *
 * @example
 * const s = new LMSDiscreteScheduler({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 })
 * s.setTimesteps(50)
 * let x = noise.map((v) => v * s.initNoiseSigma)
 * for (const t of s.timesteps) x = s.step(unet(s.scaleModelInput(x, t), t), t, x).prevSample
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  addNoiseIndex,
  checkBeginIndex,
  checkNumInferenceSteps,
  indexForTimestep,
  resolveConfig,
} from './common'
import {
  checkOneSigmaSpacing,
  discreteSigmaSchedule,
  scaleBySigma,
  sigmaAddNoise,
  sigmaInitNoise,
  sigmaPredictX0,
  sigmaTrainingSchedule,
} from './sigmas'
import type { Scheduler, SchedulerConfig, StepOutput } from './types'

const f = Math.fround

/** diffusers' `LMSDiscreteScheduler.__init__` defaults. */
export const LMS_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  timestep_spacing: 'linspace',
})

/** How many past derivatives diffusers' `step` uses by default (`order=4`). */
export const LMS_ORDER = 4

// 8-point Gauss–Legendre nodes and weights on [−1, 1]: exact for polynomials up to degree 15, so
// exact here (the integrand has degree order − 1 ≤ 3). diffusers uses scipy's adaptive `quad`.
const GL_NODES = [
  -0.9602898564975363, -0.7966664774136267, -0.525532409916329, -0.1834346424956498,
  0.1834346424956498, 0.525532409916329, 0.7966664774136267, 0.9602898564975363,
]
const GL_WEIGHTS = [
  0.1012285362903763, 0.2223810344533745, 0.3137066458778873, 0.362683783378362, 0.362683783378362,
  0.3137066458778873, 0.2223810344533745, 0.1012285362903763,
]

/** ∫_a^b g(τ) dτ by fixed 8-point Gauss–Legendre quadrature. */
export function gaussLegendre(g: (tau: number) => number, a: number, b: number): number {
  const mid = (a + b) / 2
  const half = (b - a) / 2
  let sum = 0
  for (let i = 0; i < GL_NODES.length; i++) sum += GL_WEIGHTS[i] * g(mid + half * GL_NODES[i])
  return sum * half
}

/** Linear multistep sampler over the σ schedule (k-diffusion `sample_lms`). */
export class LMSDiscreteScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'LMSDiscreteScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<typeof LMS_DEFAULTS>
  /** One model evaluation per step. */
  readonly order = 1
  /** Timesteps are fractional training steps held as float32. */
  readonly timestepsDtype = 'float32' as const
  /** σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) for every training step (float32, ascending in t). */
  readonly trainSigmas: Float32Array
  private schedule: number[] = []
  private sigmaList = new Float32Array(0)
  private stepIndex: number | null = null
  private beginIndex: number | null = null
  private derivatives: Float32Array[] = []

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(LMS_DEFAULTS, config)
    const c = this.config
    checkOneSigmaSpacing(this.className, c)
    if (c.use_beta_sigmas) {
      throw new SchedulerError('LMSDiscreteScheduler: use_beta_sigmas is not supported')
    }
    this.trainSigmas = sigmaTrainingSchedule(c)
  }

  /** The timesteps set by `setTimesteps` (empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /** σ per timestep plus the final 0 (empty before `setTimesteps`). */
  get sigmas(): Float32Array {
    return this.sigmaList
  }

  /** √(σ_max² + 1) for `leading` spacing, σ_max otherwise (float32, like diffusers). */
  get initNoiseSigma(): number {
    const sigmas = this.sigmaList.length > 0 ? this.sigmaList : this.trainSigmas
    return sigmaInitNoise(sigmas, this.config.timestep_spacing)
  }

  /** Builds the σ schedule for `numInferenceSteps` steps and clears the derivative history. */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config
    const T = c.num_train_timesteps
    checkNumInferenceSteps(numInferenceSteps, T)
    const { timesteps: ts, sigmas: sig } = discreteSigmaSchedule(
      c,
      numInferenceSteps,
      this.trainSigmas,
    )
    sig.push(0)
    this.sigmaList = Float32Array.from(sig)
    this.schedule = ts
    this.stepIndex = null
    this.beginIndex = null
    this.derivatives = []
  }

  // Copied from EulerDiscreteScheduler: setBeginIndex and addNoise (as diffusers copies them).
  /** Starts the loop at `timesteps[index]` (diffusers' `set_begin_index`). */
  setBeginIndex(index: number): void {
    this.beginIndex = checkBeginIndex(this.className, index, this.schedule.length)
  }

  /** x_0 noised to σ(t) (diffusers' `add_noise`; the index rule is `addNoiseIndex`'s). */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    if (this.sigmaList.length === 0)
      throw new SchedulerError(`${this.className}: call setTimesteps before addNoise`)
    const i = addNoiseIndex(this.beginIndex, this.stepIndex, () =>
      indexForTimestep(this.schedule, f(t)),
    )
    return sigmaAddNoise(original, noise, this.sigmaList![i])
  }

  /** Divides by sqrt(σ² + 1) so the model sees unit-variance input. */
  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    const sigma = this.sigmaList[this.currentIndex(t)]
    return scaleBySigma(sample, sigma)
  }

  /**
   * The LMS weight of the derivative `current` steps back: ∫_{σ_i}^{σ_{i+1}} ℓ_current(τ) dτ, where
   * ℓ is the Lagrange basis polynomial over σ_i, σ_{i−1}, …, σ_{i−order+1}.
   */
  lmsCoefficient(order: number, i: number, current: number): number {
    const s = this.sigmaList
    const basis = (tau: number): number => {
      let prod = 1
      for (let k = 0; k < order; k++) {
        if (k === current) continue
        prod *= (tau - s[i - k]) / (s[i - current] - s[i - k])
      }
      return prod
    }
    return gaussLegendre(basis, s[i], s[i + 1])
  }

  /** x_{i+1} = x_i + Σ_j c_j·d_{i−j}, with d = (x − x̂_0)/σ and c_j from `lmsCoefficient`. */
  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    const i = this.currentIndex(t)
    const sigma = this.sigmaList[i]
    const pt = this.config.prediction_type
    const len = sample.length
    const x0 = sigmaPredictX0(pt, modelOutput, sample, sigma)
    const derivative = new Float32Array(len)
    for (let k = 0; k < len; k++) derivative[k] = f(f(sample[k] - x0[k]) / sigma)
    this.derivatives.push(derivative)
    if (this.derivatives.length > LMS_ORDER) this.derivatives.shift()

    const order = Math.min(i + 1, LMS_ORDER)
    const coeffs = Array.from({ length: order }, (_, j) => f(this.lmsCoefficient(order, i, j)))
    const prev = new Float32Array(len)
    const n = this.derivatives.length
    const terms = Math.min(order, n) // zip() semantics when the history is shorter
    for (let k = 0; k < len; k++) {
      // Newest derivative first, accumulated left to right in float32 like Python's sum().
      let acc = f(coeffs[0] * this.derivatives[n - 1][k])
      for (let j = 1; j < terms; j++) acc = f(acc + f(coeffs[j] * this.derivatives[n - 1 - j][k]))
      prev[k] = f(sample[k] + acc)
    }
    this.stepIndex = i + 1
    return { prevSample: prev, predOriginalSample: x0 }
  }

  /** diffusers' `_init_step_index`: locate `t` on the first call, then count steps. */
  private currentIndex(t: number): number {
    if (this.schedule.length === 0) {
      throw new SchedulerError('LMSDiscreteScheduler: call setTimesteps before stepping')
    }
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? indexForTimestep(this.schedule, f(t))
    if (this.stepIndex >= this.schedule.length) {
      throw new SchedulerError('LMSDiscreteScheduler: stepped past the last timestep')
    }
    return this.stepIndex
  }
}
