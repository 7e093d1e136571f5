/**
 * @module
 * Ancestral Euler sampling ("Euler a"), a port of diffusers' `EulerAncestralDiscreteScheduler`
 * (k-diffusion's `sample_euler_ancestral`): an Euler step down to σ_down, then fresh noise of
 * standard deviation σ_up so the marginal at σ_next is right.
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
  discreteSigmaSchedule,
  scaleBySigma,
  sigmaAddNoise,
  sigmaInitNoise,
  sigmaPredictX0,
  sigmaTrainingSchedule,
} from './sigmas'
import type { Scheduler, SchedulerConfig, StepOptions, StepOutput } from './types'

const f = Math.fround

/** diffusers' `EulerAncestralDiscreteScheduler.__init__` defaults. */
export const EULER_ANCESTRAL_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  timestep_spacing: 'linspace',
  rescale_betas_zero_snr: false,
})

/** Euler a: Euler to σ_down, plus σ_up·z with z drawn from the step's generator. */
export class EulerAncestralDiscreteScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'EulerAncestralDiscreteScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<Widen<typeof EULER_ANCESTRAL_DEFAULTS>>
  /** One model evaluation per step. */
  readonly order = 1
  /** Timesteps are float32 (fractional for linspace spacing). */
  readonly timestepsDtype = 'float32' as const
  /** Training σ_t, ascending in t (float32). */
  readonly trainSigmas: Float32Array
  private schedule: number[] = []
  private sigmaSchedule: Float32Array | undefined = undefined
  private stepIndex: number | null = null
  private beginIndex: number | null = null

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(EULER_ANCESTRAL_DEFAULTS, config)
    if (this.config.prediction_type === 'sample') {
      throw new SchedulerError(
        'EulerAncestralDiscreteScheduler: prediction_type "sample" is not supported',
      )
    }
    this.trainSigmas = sigmaTrainingSchedule(this.config)
  }

  /** The timesteps set by `setTimesteps` (empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /** σ for each timestep plus a final 0; undefined before `setTimesteps`. */
  get sigmas(): Float32Array | undefined {
    return this.sigmaSchedule
  }

  /** The standard deviation of the initial latents (σ_max, or √(σ_max² + 1) for leading spacing). */
  get initNoiseSigma(): number {
    return sigmaInitNoise(this.sigmaSchedule ?? this.trainSigmas, this.config.timestep_spacing)
  }

  /** Spaces the timesteps and interpolates σ at them (`np.interp` on the training σ). */
  setTimesteps(numInferenceSteps: number): void {
    const n = numInferenceSteps
    const c = this.config
    checkNumInferenceSteps(n, c.num_train_timesteps)
    const { timesteps, sigmas } = discreteSigmaSchedule(c, n, this.trainSigmas)
    this.schedule = timesteps
    this.sigmaSchedule = Float32Array.from([...sigmas, 0])
    this.stepIndex = null
    this.beginIndex = null
  }

  // Copied from EulerDiscreteScheduler: setBeginIndex and addNoise (as diffusers copies them).
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
   * σ_up = √(σ_next²(σ² − σ_next²)/σ²), σ_down = √(σ_next² − σ_up²);
   * x_next = x + (σ_down − σ)·(x − x̂_0)/σ + σ_up·z. Draws z on every step, the last included.
   */
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    options: StepOptions = {},
  ): StepOutput {
    const i = this.indexFor(t)
    const sig = this.sigmaSchedule as Float32Array
    const sigma = sig[i]
    const next = sig[i + 1]
    const sq = f(sigma * sigma)
    const nq = f(next * next)
    const up = f(Math.sqrt(f(f(nq * f(sq - nq)) / sq)))
    const down = f(Math.sqrt(f(nq - f(up * up))))
    const dt = f(down - sigma)
    const x0 = sigmaPredictX0(this.config.prediction_type, modelOutput, sample, sigma)
    const prev = new Float32Array(sample.length)
    for (let k = 0; k < sample.length; k++) {
      const s = sample[k]
      const d = f(f(s - x0[k]) / sigma)
      prev[k] = f(s + f(d * dt))
    }
    if (!options.generator) {
      throw new SchedulerError('EulerAncestralDiscreteScheduler: step needs a generator')
    }
    const z = options.generator.randn([sample.length])
    for (let k = 0; k < prev.length; k++) prev[k] = f(prev[k] + f(z[k] * up))
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
