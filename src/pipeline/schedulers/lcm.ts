/**
 * @module
 * Latent Consistency Model multistep sampling (Luo et al. 2023, "Latent Consistency Models",
 * arXiv:2310.04378, Algorithm 3), a port of diffusers' `LCMScheduler`: each step maps x_t to the
 * consistency function's x̂_0, then re-noises it to the next timestep with fresh noise.
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  addNoiseIndex,
  alphasCumprodFromConfig,
  checkBeginIndex,
  checkNoThresholding,
  checkNumInferenceSteps,
  finalAlphaCumprod,
  indexForTimestep,
  resolveConfig,
  type Widen,
  vpAddNoise,
  vpConvertModelOutput,
} from './common'
import type { Scheduler, SchedulerConfig, StepOptions, StepOutput } from './types'

const f = Math.fround

/** diffusers' `LCMScheduler.__init__` defaults (SD's schedule, 50 distillation steps). */
export const LCM_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
})

/** σ_data of the consistency-model boundary condition (Song et al. 2023, Appendix C). */
const SIGMA_DATA = 0.5

/** LCM sampler; `predOriginalSample` holds the step's `denoised` output. */
export class LCMScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'LCMScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<Widen<typeof LCM_DEFAULTS>>
  /** One model evaluation per step. */
  readonly order = 1
  /** LCM starts from unit-variance noise. */
  readonly initNoiseSigma = 1
  /** Timesteps are training-step indices. */
  readonly timestepsDtype = 'int64' as const
  /** ᾱ_t for every training step (float32). */
  readonly alphasCumprod: Float32Array
  private readonly finalAlphaCumprod: number
  private numInferenceSteps: number | null = null
  private schedule: number[] = []
  private stepIndex: number | null = null
  private beginIndex: number | null = null

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(LCM_DEFAULTS, config)
    checkNoThresholding(this.className, this.config)
    this.alphasCumprod = alphasCumprodFromConfig(this.config)
    this.finalAlphaCumprod = finalAlphaCumprod(this.config.set_alpha_to_one, this.alphasCumprod)
  }

  /** The timesteps set by `setTimesteps` (empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /**
   * Picks `numInferenceSteps` of the `original_inference_steps` distillation timesteps
   * (k·⌊T/N⌋ − 1), evenly by index from the noisiest. `timestep_spacing` is ignored, as in diffusers.
   */
  setTimesteps(numInferenceSteps: number): void {
    const n = numInferenceSteps
    const { num_train_timesteps: T, original_inference_steps: N } = this.config
    checkNumInferenceSteps(n, T)
    if (!Number.isInteger(N) || N < 1 || N > T) {
      throw new SchedulerError(
        `LCMScheduler: original_inference_steps must be in 1..${T}, got ${N}`,
      )
    }
    if (n > N) {
      throw new SchedulerError(
        `LCMScheduler: num_inference_steps (${n}) cannot exceed original_inference_steps (${N})`,
      )
    }
    const k = Math.floor(T / N)
    const origin = Array.from({ length: N }, (_, i) => (N - i) * k - 1)
    // np.floor(np.linspace(0, N, n, endpoint=False))
    this.schedule = Array.from({ length: n }, (_, i) => origin[Math.floor(i * (N / n))])
    this.numInferenceSteps = n
    this.stepIndex = null
    this.beginIndex = null
  }

  // Copied from EulerDiscreteScheduler: setBeginIndex and addNoise (as diffusers copies them).
  /** Starts the loop at `timesteps[index]` (diffusers' `set_begin_index`). */
  setBeginIndex(index: number): void {
    this.beginIndex = checkBeginIndex(this.className, index, this.schedule.length)
  }

  /** x_0 noised to ᾱ(t) (diffusers' `add_noise`, which reads ᾱ at `t` itself). */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return vpAddNoise(this.className, this.alphasCumprod, original, noise, t)
  }

  /** LCM needs no input scaling; returns `sample` unchanged. */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample
  }

  /**
   * denoised = c_out(t)·x̂_0 + c_skip(t)·x_t (the consistency parameterisation, LCM eq. 4), then
   * x_{prev} = √ᾱ_prev·denoised + √(1 − ᾱ_prev)·z, except after the last step (prev = denoised).
   */
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    options: StepOptions = {},
  ): StepOutput {
    const n = this.numInferenceSteps
    if (n === null) throw new SchedulerError('LCMScheduler: call setTimesteps before step')
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? indexForTimestep(this.schedule, t)
    const i = this.stepIndex
    const prevT = i + 1 < this.schedule.length ? this.schedule[i + 1] : t
    const aT = this.alphaAt(t)
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod
    const sqA = f(Math.sqrt(aT))
    const sqB = f(Math.sqrt(f(1 - aT)))
    const [cSkip, cOut] = this.boundaryScalings(t)
    const { prediction_type: pt, clip_sample, clip_sample_range } = this.config

    const len = sample.length
    const x0 = vpConvertModelOutput(pt, true, modelOutput, sample, sqA, sqB)
    const r = clip_sample_range
    const denoised = x0.map((x, k) => {
      // NOTE: the clamped value is not rounded to float32 before c_out multiplies it (kept as is).
      const c = clip_sample ? Math.min(r, Math.max(-r, x)) : x
      return f(f(cOut * c) + f(cSkip * sample[k]))
    })

    let prev = denoised
    if (i !== n - 1) {
      if (!options.generator) throw new SchedulerError('LCMScheduler: step needs a generator')
      const z = options.generator.randn([len])
      const sqAPrev = f(Math.sqrt(aPrev))
      const sqBPrev = f(Math.sqrt(f(1 - aPrev)))
      prev = denoised.map((d, k) => f(f(sqAPrev * d) + f(sqBPrev * z[k])))
    }
    this.stepIndex = i + 1
    return { prevSample: prev, predOriginalSample: denoised }
  }

  /**
   * c_skip = σ_d² / ((sτ)² + σ_d²), c_out = sτ / √((sτ)² + σ_d²) with s = `timestep_scaling`
   * (diffusers' `get_scalings_for_boundary_condition_discrete`), in float32.
   */
  private boundaryScalings(t: number): [number, number] {
    const st = f(t * this.config.timestep_scaling)
    const denom = f(f(st * st) + f(SIGMA_DATA ** 2))
    return [f(f(SIGMA_DATA ** 2) / denom), f(st / f(Math.sqrt(denom)))]
  }

  /** ᾱ at an integer timestep. */
  private alphaAt(t: number): number {
    const a = this.alphasCumprod
    if (!Number.isInteger(t) || t < 0 || t >= a.length) {
      throw new SchedulerError(`LCMScheduler: timestep ${t} is not a training timestep`)
    }
    return a[t]
  }
}
