/**
 * @module
 * Heun's 2nd-order sampler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
 * Generative Models", arXiv:2206.00364, Algorithm 1 with γ = 0), a port of diffusers'
 * `HeunDiscreteScheduler`. Each solver step costs two model calls, so `setTimesteps(n)` yields
 * 2n − 1 timesteps: every timestep after the first appears twice, once for the Euler predictor
 * and once for the trapezoidal corrector.
 *
 * @example
 * const s = new HeunDiscreteScheduler({ beta_schedule: 'scaled_linear' })
 * s.setTimesteps(25)
 * let x = noise.map((v) => v * s.initNoiseSigma)
 * for (const t of s.timesteps) x = s.step(unet(s.scaleModelInput(x, t), t), t, x).prevSample
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  addNoiseIndex,
  checkBeginIndex,
  checkNumInferenceSteps,
  clipSample,
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

/** diffusers' `HeunDiscreteScheduler.__init__` defaults. */
export const HEUN_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: 'linspace',
})

/** Heun's method on the probability-flow ODE dx/dσ = (x − x̂_0)/σ (Karras et al. 2022, Alg. 1). */
export class HeunDiscreteScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'HeunDiscreteScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<typeof HEUN_DEFAULTS>
  /** Two model evaluations per solver step. */
  readonly order = 2
  /** Timesteps are fractional training steps held as float32. */
  readonly timestepsDtype = 'float32' as const
  /** σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) for every training step (float32, ascending in t). */
  readonly trainSigmas: Float32Array
  private schedule: number[] = []
  private sigmaList = new Float32Array(0)
  private stepIndex: number | null = null
  private beginIndex: number | null = null
  // State between the predictor (first-order) and corrector (second-order) half-steps.
  private prevDerivative: Float32Array | null = null
  private dt: number | null = null
  private savedSample: Float32Array | null = null

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(HEUN_DEFAULTS, config)
    const c = this.config
    checkOneSigmaSpacing(this.className, c)
    if (c.use_beta_sigmas) {
      throw new SchedulerError('HeunDiscreteScheduler: use_beta_sigmas is not supported')
    }
    this.trainSigmas = sigmaTrainingSchedule(c)
  }

  /** The timesteps set by `setTimesteps` (empty before), each after the first repeated. */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /** σ per timestep plus the final 0, duplicated like the timesteps (empty before `setTimesteps`). */
  get sigmas(): Float32Array {
    return this.sigmaList
  }

  /** √(σ_max² + 1) for `leading` spacing, σ_max otherwise (float32, like diffusers). */
  get initNoiseSigma(): number {
    const sigmas = this.sigmaList.length > 0 ? this.sigmaList : this.trainSigmas
    return sigmaInitNoise(sigmas, this.config.timestep_spacing)
  }

  /** Whether the next `step` is an Euler predictor (true) or the Heun corrector (false). */
  get stateInFirstOrder(): boolean {
    return this.dt === null
  }

  /** Builds the σ schedule for `numInferenceSteps` solver steps and resets the loop state. */
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
    const sigmas = Float32Array.from(sig)
    // [σ0, σ1, σ1, …, σ_{n−1}, σ_{n−1}, 0] and [t0, t1, t1, …, t_{n−1}, t_{n−1}].
    const dup = new Float32Array(2 * numInferenceSteps)
    dup[0] = sigmas[0]
    for (let i = 1; i < sigmas.length - 1; i++) dup[2 * i - 1] = dup[2 * i] = sigmas[i]
    dup[dup.length - 1] = 0
    this.sigmaList = dup
    this.schedule = [ts[0], ...ts.slice(1).flatMap((t) => [t, t])]
    this.stepIndex = null
    this.beginIndex = null
    this.prevDerivative = null
    this.dt = null
    this.savedSample = null
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

  /** Divides by sqrt(σ² + 1) so the model sees unit-variance input (Karras et al. 2022, Table 1). */
  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    const sigma = this.sigmaList[this.currentIndex(t)]
    return scaleBySigma(sample, sigma)
  }

  /**
   * One half-step. Predictor: d = (x − x̂_0)/σ_i, x' = x + (σ_{i+1} − σ_i)·d. Corrector: with d'
   * from the model at x', x_{i+1} = x + (σ_{i+1} − σ_i)·(d + d')/2 (Karras et al. 2022, Alg. 1
   * lines 5–8).
   */
  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    const i = this.currentIndex(t)
    const first = this.stateInFirstOrder
    const sigma = first ? this.sigmaList[i] : this.sigmaList[i - 1]
    const sigmaNext = first ? this.sigmaList[i + 1] : this.sigmaList[i]
    const sigmaIn = first ? sigma : sigmaNext
    const { prediction_type: pt, clip_sample, clip_sample_range: r } = this.config

    const len = sample.length
    const x0 = sigmaPredictX0(pt, modelOutput, sample, sigmaIn)
    if (clip_sample) clipSample(x0, r)

    const prev = new Float32Array(len)
    if (first) {
      const derivative = new Float32Array(len)
      const dt = f(sigmaNext - sigma)
      for (let k = 0; k < len; k++) {
        derivative[k] = f(f(sample[k] - x0[k]) / sigma)
        prev[k] = f(sample[k] + f(derivative[k] * dt))
      }
      this.prevDerivative = derivative
      this.dt = dt
      this.savedSample = sample
    } else {
      const pd = this.prevDerivative!
      const dt = this.dt!
      const base = this.savedSample!
      for (let k = 0; k < len; k++) {
        const d2 = f(f(sample[k] - x0[k]) / sigmaNext)
        const d = f(f(pd[k] + d2) / 2)
        prev[k] = f(base[k] + f(d * dt))
      }
      this.prevDerivative = null
      this.dt = null
      this.savedSample = null
    }
    this.stepIndex = i + 1
    return { prevSample: prev, predOriginalSample: x0 }
  }

  /** diffusers' `_init_step_index`: locate `t` on the first call, then count steps. */
  private currentIndex(t: number): number {
    if (this.schedule.length === 0) {
      throw new SchedulerError('HeunDiscreteScheduler: call setTimesteps before stepping')
    }
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? indexForTimestep(this.schedule, f(t))
    if (this.stepIndex >= this.schedule.length) {
      throw new SchedulerError('HeunDiscreteScheduler: stepped past the last timestep')
    }
    return this.stepIndex
  }
}
