/**
 * @module
 * DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502), a port of
 * diffusers' `DDIMScheduler`: deterministic for η = 0, DDPM-like noise for η = 1.
 *
 * @example
 * const s = new DDIMScheduler({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 })
 * s.setTimesteps(50)
 * for (const t of s.timesteps) x = s.step(unet(x, t), t, x, { eta: 0 }).prevSample
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  alphaCumprodAt,
  alphasCumprodFromConfig,
  checkNoThresholding,
  checkNumInferenceSteps,
  clipSample,
  finalAlphaCumprod,
  integerSpacedTimesteps,
  resolveConfig,
  type Widen,
  vpAddNoise,
  vpConvertModelOutput,
} from './common'
import type { Scheduler, SchedulerConfig, StepOptions, StepOutput } from './types'

const f = Math.fround

/** diffusers' `DDIMScheduler.__init__` defaults. */
export const DDIM_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  clip_sample: true,
  set_alpha_to_one: true,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  rescale_betas_zero_snr: false,
})

/** DDIM sampler (Song et al. 2021, eq. 12), stepping between `timestep_spacing` timesteps. */
export class DDIMScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'DDIMScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<Widen<typeof DDIM_DEFAULTS>>
  /** One model evaluation per step. */
  readonly order = 1
  /** DDIM starts from unit-variance noise. */
  readonly initNoiseSigma = 1
  /** Timesteps are training-step indices. */
  readonly timestepsDtype = 'int64' as const
  /** ᾱ_t for every training step (float32). */
  readonly alphasCumprod: Float32Array
  private readonly finalAlphaCumprod: number
  private numInferenceSteps: number | null = null
  private schedule: number[] = []

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(DDIM_DEFAULTS, config)
    checkNoThresholding(this.className, this.config)
    this.alphasCumprod = alphasCumprodFromConfig(this.config)
    // The last step has no ᾱ_{t−1}: SD uses ᾱ_0 (set_alpha_to_one false), the paper uses 1.
    this.finalAlphaCumprod = finalAlphaCumprod(this.config.set_alpha_to_one, this.alphasCumprod)
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

  /** DDIM needs no input scaling; returns `sample` unchanged. */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample
  }

  /**
   * DDIM eq. 12: x_{t−1} = √ᾱ_{t−1}·x̂_0 + √(1 − ᾱ_{t−1} − σ_t²)·ε̂ + σ_t·z, with
   * σ_t = η·√((1 − ᾱ_{t−1})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−1}) (eq. 16). z is drawn only when η > 0.
   */
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    options: StepOptions = {},
  ): StepOutput {
    const n = this.numInferenceSteps
    if (n === null) throw new SchedulerError('DDIMScheduler: call setTimesteps before step')
    const eta = options.eta ?? 0
    const {
      num_train_timesteps: T,
      prediction_type: pt,
      clip_sample,
      clip_sample_range,
    } = this.config

    // NOTE: diffusers steps back by ⌊T/n⌋ whatever the spacing; kept for parity.
    const prevT = t - Math.floor(T / n)
    const aT = this.alphaAt(t)
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod
    const bT = f(1 - aT)
    const sqA = f(Math.sqrt(aT))
    const sqB = f(Math.sqrt(bT))

    const len = sample.length
    const x0 = vpConvertModelOutput(pt, true, modelOutput, sample, sqA, sqB)
    // ε̂ comes from the unclipped x̂_0, as in diffusers.
    const eps = vpConvertModelOutput(pt, false, modelOutput, sample, sqA, sqB)
    if (clip_sample) clipSample(x0, clip_sample_range)

    const variance = f(f(f(1 - aPrev) / bT) * f(1 - f(aT / aPrev)))
    const std = f(eta * f(Math.sqrt(variance)))
    const dirCoef = f(Math.sqrt(f(f(1 - aPrev) - f(std * std))))
    const sqAPrev = f(Math.sqrt(aPrev))
    const prev = new Float32Array(len)
    for (let k = 0; k < len; k++) prev[k] = f(f(sqAPrev * x0[k]) + f(dirCoef * eps[k]))

    if (eta > 0) {
      if (!options.generator) throw new SchedulerError('DDIMScheduler: eta > 0 needs a generator')
      const z = options.generator.randn([len])
      for (let k = 0; k < len; k++) prev[k] = f(prev[k] + f(std * z[k]))
    }
    return { prevSample: prev, predOriginalSample: x0 }
  }

  /** ᾱ at an integer timestep; negative indices wrap like the torch indexing diffusers does. */
  private alphaAt(t: number): number {
    return alphaCumprodAt(this.className, this.alphasCumprod, t)
  }
}
