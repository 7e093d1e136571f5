/**
 * @module
 * Euler sampling of the probability-flow ODE in σ-space (Karras et al. 2022, "Elucidating the
 * Design Space of Diffusion-Based Generative Models", arXiv:2206.00364, Algorithm 2 with
 * S_churn = 0), a port of diffusers' `EulerDiscreteScheduler` (k-diffusion's `sample_euler`).
 *
 * @example
 * const s = new EulerDiscreteScheduler(scheduler_config)
 * s.setTimesteps(30)
 * let x = randn.map((v) => v * s.initNoiseSigma)
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
  type Widen,
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

/** diffusers' `EulerDiscreteScheduler.__init__` defaults. */
export const EULER_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  timestep_spacing: 'linspace',
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  timestep_type: 'discrete',
  rescale_betas_zero_snr: false,
  final_sigmas_type: 'zero',
})

/** Euler (Karras et al. Algorithm 2, no churn) over σ interpolated at the spaced timesteps. */
export class EulerDiscreteScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'EulerDiscreteScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<Widen<typeof EULER_DEFAULTS>>
  /** One model evaluation per step. */
  readonly order = 1
  /** Timesteps are float32 (fractional for linspace spacing and Karras sigmas). */
  readonly timestepsDtype = 'float32' as const
  /** Training σ_t, ascending in t (float32). */
  readonly trainSigmas: Float32Array
  private schedule: number[] = []
  private sigmaSchedule: Float32Array | undefined = undefined
  private stepIndex: number | null = null
  private beginIndex: number | null = null

  constructor(config: SchedulerConfig = {}) {
    const c = resolveConfig(EULER_DEFAULTS, config)
    this.config = c
    checkOneSigmaSpacing(this.className, c)
    if (c.use_beta_sigmas) {
      throw new SchedulerError('EulerDiscreteScheduler: use_beta_sigmas is not supported')
    }
    if (c.interpolation_type !== 'linear') {
      throw new SchedulerError(
        `EulerDiscreteScheduler: unsupported interpolation_type ${JSON.stringify(c.interpolation_type)}`,
      )
    }
    if (c.timestep_type !== 'discrete' && c.timestep_type !== 'continuous') {
      throw new SchedulerError(
        `EulerDiscreteScheduler: unknown timestep_type ${JSON.stringify(c.timestep_type)}`,
      )
    }
    if (c.final_sigmas_type !== 'zero' && c.final_sigmas_type !== 'sigma_min') {
      throw new SchedulerError(
        `EulerDiscreteScheduler: unknown final_sigmas_type ${JSON.stringify(c.final_sigmas_type)}`,
      )
    }
    this.trainSigmas = sigmaTrainingSchedule(c)
  }

  /** The timesteps set by `setTimesteps` (empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /** σ for each timestep plus the final σ (0 or σ_min); undefined before `setTimesteps`. */
  get sigmas(): Float32Array | undefined {
    return this.sigmaSchedule
  }

  /** The standard deviation of the initial latents (see `sigmaInitNoise`). */
  get initNoiseSigma(): number {
    return sigmaInitNoise(this.sigmaSchedule ?? this.trainSigmas, this.config.timestep_spacing)
  }

  /**
   * Spaces the timesteps, interpolates σ at them (`np.interp` on the training σ), and optionally
   * respaces σ per Karras et al. eq. 5 or exponentially, mapping each σ back to a fractional t.
   */
  setTimesteps(numInferenceSteps: number): void {
    const n = numInferenceSteps
    const c = this.config
    checkNumInferenceSteps(n, c.num_train_timesteps)
    const schedule = discreteSigmaSchedule(c, n, this.trainSigmas)
    let ts = schedule.timesteps
    const last = c.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0] : 0
    const sig = Float32Array.from([...schedule.sigmas, last])
    if (c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction') {
      // EDM's c_noise = ¼·ln σ (Karras et al. Table 1).
      ts = Array.from(sig.subarray(0, n), (s) => f(0.25 * f(Math.log(s))))
    }
    this.schedule = ts
    this.sigmaSchedule = sig
    this.stepIndex = null
    this.beginIndex = null
  }

  /** Starts the loop at `timesteps[index]` (diffusers' `set_begin_index`). */
  setBeginIndex(index: number): void {
    this.beginIndex = checkBeginIndex(this.className, index, this.schedule.length)
  }

  /** x_0 noised to σ(t) (diffusers' `add_noise`; the index rule is `addNoiseIndex`'s). */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    if (!this.sigmaSchedule)
      throw new SchedulerError(`${this.className}: call setTimesteps before addNoise`)
    const i = addNoiseIndex(this.beginIndex, this.stepIndex, () =>
      indexForTimestep(this.schedule, f(t)),
    )
    return sigmaAddNoise(original, noise, this.sigmaSchedule![i])
  }

  /** Divides by √(σ² + 1) so the model sees unit-variance input. */
  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    return scaleBySigma(sample, this.sigmaSchedule![this.indexFor(t)])
  }

  /**
   * One Euler step: x̂_0 from the model output, d = (x − x̂_0)/σ (Karras et al. eq. 4's ODE
   * derivative), x_next = x + (σ_next − σ)·d.
   */
  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    const i = this.indexFor(t)
    const sig = this.sigmaSchedule as Float32Array
    const sigma = sig[i]
    const pt = this.config.prediction_type
    // NOTE: s_churn/s_tmin/s_tmax/s_noise stay at diffusers' defaults (γ = 0, σ̂ = σ), so no
    // noise is drawn.
    const sigmaHat = sigma
    const x0 = sigmaPredictX0(pt, modelOutput, sample, sigmaHat)
    const prev = new Float32Array(sample.length)
    const dt = f(sig[i + 1] - sigmaHat)
    for (let k = 0; k < sample.length; k++) {
      const s = sample[k]
      const d = f(f(s - x0[k]) / sigmaHat)
      prev[k] = f(s + f(d * dt))
    }
    this.stepIndex = i + 1
    return { prevSample: prev, predOriginalSample: x0 }
  }

  /** The current step index, initialised from `t` on first use (diffusers' `_init_step_index`). */
  private indexFor(t: number): number {
    if (!this.sigmaSchedule) {
      throw new SchedulerError(
        `${this.className}: call setTimesteps before scaleModelInput or step`,
      )
    }
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? indexForTimestep(this.schedule, f(t))
    if (this.stepIndex >= this.schedule.length) {
      throw new SchedulerError(`${this.className}: stepped past the last timestep`)
    }
    return this.stepIndex
  }
}
