/**
 * @module
 * The scheduler contract shared by every noise scheduler, modelled on diffusers'
 * `SchedulerMixin`: `setTimesteps` → for each `t` in `timesteps`: `scaleModelInput` → model →
 * `step`. Schedulers are pure: Float32Array in, Float32Array out, no I/O, no ONNX, and
 * randomness only from an injected generator.
 */

/** A diffusers `scheduler_config.json` as parsed JSON: snake_case keys, kept as they are. */
export type SchedulerConfig = Readonly<Record<string, unknown>>

/** The one thing a scheduler needs from a random generator: PyTorch-compatible `randn`. */
export interface NoiseGenerator {
  /** Draws standard normal float32 values in row-major order, like `torch.randn(shape)`. */
  randn(shape: readonly number[]): Float32Array
}

/** Extra arguments of `step`, as diffusers' pipeline passes them (`prepare_extra_step_kwargs`). */
export interface StepOptions {
  /** Generator for schedulers that add noise during sampling (Euler a, DDPM, LCM). */
  generator?: NoiseGenerator
  /** DDIM's η (0 = deterministic DDIM). Ignored by schedulers without it. */
  eta?: number
}

/** What `step` returns: the previous sample x_{t-1} and, where the scheduler has it, x̂_0. */
export interface StepOutput {
  /** The sample at the next (less noisy) timestep. */
  prevSample: Float32Array
  /** The predicted denoised sample x̂_0 (`pred_original_sample`, or `denoised` for LCM). */
  predOriginalSample?: Float32Array
}

/** A noise scheduler, stateful across one sampling loop like its diffusers counterpart. */
export interface Scheduler {
  /** The diffusers class name, e.g. `EulerDiscreteScheduler`. */
  readonly className: string
  /** The full config after defaults are applied (snake_case), as diffusers' `scheduler.config`. */
  readonly config: SchedulerConfig
  /** How many model evaluations one step of the underlying solver uses (Heun: 2). */
  readonly order: number
  /** The standard deviation of the initial noise: multiply `randn` latents by this. */
  readonly initNoiseSigma: number
  /** The timesteps to run, in order, after `setTimesteps` (integers, or float32 values). */
  readonly timesteps: readonly number[]
  /** Whether diffusers holds the timesteps as int64 or float32 (the UNet input dtype follows). */
  readonly timestepsDtype: 'int64' | 'float32'
  /** σ per timestep plus the final σ (length `timesteps.length + 1`), for sigma-based schedulers. */
  readonly sigmas?: Float32Array
  /** Prepares the schedule for `numInferenceSteps` steps and resets the loop state. */
  setTimesteps(numInferenceSteps: number): void
  /** Scales the model input for timestep `t` (e.g. Euler divides by sqrt(σ²+1)). */
  scaleModelInput(sample: Float32Array, t: number): Float32Array
  /**
   * diffusers' `add_noise`: `original` (clean latents) noised to the level of timestep `t` with
   * `noise`, as image-to-image and inpainting start. Throws before `setTimesteps`.
   */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array
  /**
   * diffusers' `set_begin_index`, on the schedulers that have it: the loop starts at this index of
   * `timesteps` (image-to-image skips the first ones), which `step` and `addNoise` then use.
   */
  setBeginIndex?(index: number): void
  /** One reverse-diffusion step from `t` given the model's output. Throws before `setTimesteps`. */
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    options?: StepOptions,
  ): StepOutput
}
