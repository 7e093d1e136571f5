/**
 * @module
 * DDPM ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
 * arXiv:2006.11239), a port of diffusers' `DDPMScheduler` for strided inference schedules.
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  alphaCumprodAt,
  alphasCumprodFromConfig,
  checkNoThresholding,
  checkNumInferenceSteps,
  clipSample,
  integerSpacedTimesteps,
  resolveConfig,
  type Widen,
  vpAddNoise,
  vpConvertModelOutput,
} from './common'
import type { Scheduler, SchedulerConfig, StepOptions, StepOutput } from './types'

const f = Math.fround

/** The `variance_type` values this port supports (the learned ones need the channel layout). */
export const DDPM_VARIANCE_TYPES = Object.freeze(['fixed_small', 'fixed_small_log', 'fixed_large'])

/** diffusers' `DDPMScheduler.__init__` defaults. */
export const DDPM_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  variance_type: 'fixed_small',
  clip_sample: true,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  rescale_betas_zero_snr: false,
})

/** DDPM sampler: the posterior q(x_{t−1} | x_t, x̂_0) (Ho et al. eq. 7) plus fresh noise. */
export class DDPMScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'DDPMScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<Widen<typeof DDPM_DEFAULTS>>
  /** One model evaluation per step. */
  readonly order = 1
  /** DDPM starts from unit-variance noise. */
  readonly initNoiseSigma = 1
  /** Timesteps are training-step indices. */
  readonly timestepsDtype = 'int64' as const
  /** ᾱ_t for every training step (float32). */
  readonly alphasCumprod: Float32Array
  private numInferenceSteps: number | null = null
  private schedule: number[] = []

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(DDPM_DEFAULTS, config)
    checkNoThresholding(this.className, this.config)
    if (!DDPM_VARIANCE_TYPES.includes(this.config.variance_type)) {
      throw new SchedulerError(
        `DDPMScheduler: unsupported variance_type ${JSON.stringify(this.config.variance_type)}; expected one of ${DDPM_VARIANCE_TYPES.join(', ')}`,
      )
    }
    this.alphasCumprod = alphasCumprodFromConfig(this.config)
  }

  /** The timesteps set by `setTimesteps` (empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /** Spaces `numInferenceSteps` timesteps over the training range per `timestep_spacing`. */
  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps: T, timestep_spacing: spacing, steps_offset } = this.config
    checkNumInferenceSteps(numInferenceSteps, T)
    this.schedule = integerSpacedTimesteps(spacing, numInferenceSteps, T, steps_offset)
    this.numInferenceSteps = numInferenceSteps
  }

  /** x_0 noised to ᾱ(t) (diffusers' `add_noise`). */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return vpAddNoise(this.className, this.alphasCumprod, original, noise, t)
  }

  /** DDPM needs no input scaling; returns `sample` unchanged. */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample
  }

  /**
   * x_{t−1} = μ̃_t(x_t, x̂_0) + σ_t·z (Ho et al. eqs. 6–7), with
   * μ̃_t = √ᾱ_{t−1}·β'_t/(1 − ᾱ_t)·x̂_0 + √α'_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t)·x_t, where α'_t = ᾱ_t/ᾱ_{t−1}
   * spans the stride. z ~ N(0, I) is drawn from `options.generator` for every t > 0.
   */
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    options: StepOptions = {},
  ): StepOutput {
    if (this.numInferenceSteps === null) {
      throw new SchedulerError('DDPMScheduler: call setTimesteps before step')
    }
    const { prediction_type: pt, clip_sample, clip_sample_range } = this.config
    const prevT = this.previousTimestep(t)
    const aT = this.alphaAt(t)
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : 1
    const bT = f(1 - aT)
    const bPrev = f(1 - aPrev)
    const curAlpha = f(aT / aPrev)
    const curBeta = f(1 - curAlpha)
    const sqA = f(Math.sqrt(aT))
    const sqB = f(Math.sqrt(bT))

    const len = sample.length
    const x0 = vpConvertModelOutput(pt, true, modelOutput, sample, sqA, sqB)
    if (clip_sample) clipSample(x0, clip_sample_range)

    const x0Coef = f(f(f(Math.sqrt(aPrev)) * curBeta) / bT)
    const xtCoef = f(f(f(Math.sqrt(curAlpha)) * bPrev) / bT)
    const prev = new Float32Array(len)
    for (let k = 0; k < len; k++) prev[k] = f(f(x0Coef * x0[k]) + f(xtCoef * sample[k]))

    if (t > 0) {
      if (!options.generator) throw new SchedulerError('DDPMScheduler: step needs a generator')
      const z = options.generator.randn([len])
      const std = this.noiseStd(t)
      for (let k = 0; k < len; k++) prev[k] = f(prev[k] + f(std * z[k]))
    }
    return { prevSample: prev, predOriginalSample: x0 }
  }

  /** The stride-aware posterior standard deviation σ_t for `variance_type` (diffusers' `_get_variance`). */
  private noiseStd(t: number): number {
    const prevT = this.previousTimestep(t)
    const aT = this.alphaAt(t)
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : 1
    const curBeta = f(1 - f(aT / aPrev))
    // β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β'_t (Ho et al. eq. 7), clamped away from 0 for the log.
    const variance = Math.max(f(f(f(1 - aPrev) / f(1 - aT)) * curBeta), 1e-20)
    switch (this.config.variance_type) {
      case 'fixed_small_log':
        return f(Math.exp(f(0.5 * f(Math.log(variance)))))
      case 'fixed_large':
        return f(Math.sqrt(curBeta))
      default:
        return f(Math.sqrt(variance))
    }
  }

  private previousTimestep(t: number): number {
    return t - Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps as number))
  }

  /** ᾱ at an integer timestep; negative indices wrap like the torch indexing diffusers does. */
  private alphaAt(t: number): number {
    return alphaCumprodAt(this.className, this.alphasCumprod, t)
  }
}
