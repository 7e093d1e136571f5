/**
 * @module
 * PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds",
 * arXiv:2202.09778), a port of diffusers' `PNDMScheduler`. With `skip_prk_steps` (Stable
 * Diffusion's setting) it is pure PLMS: linear multistep on ε̂ (eq. 12), bootstrapped by one
 * second-order step; otherwise three Runge–Kutta (PRK) steps warm it up first.
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  alphaCumprodAt,
  alphasCumprodFromConfig,
  checkNumInferenceSteps,
  finalAlphaCumprod,
  integerSpacedTimesteps,
  resolveConfig,
  type Widen,
  vpAddNoise,
} from './common'
import type { Scheduler, SchedulerConfig, StepOutput } from './types'

const f = Math.fround

/** diffusers' `PNDMScheduler.__init__` defaults. */
export const PNDM_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  skip_prk_steps: false,
  set_alpha_to_one: false,
})

/** How many past ε̂ the linear multistep keeps (4th-order Adams–Bashforth). */
const PNDM_ORDER = 4

/** PNDM / PLMS sampler; stateful across one loop (it keeps the last ε̂ outputs). */
export class PNDMScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'PNDMScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<Widen<typeof PNDM_DEFAULTS>>
  /** diffusers reports 1: each entry of `timesteps` is one model evaluation. */
  readonly order = 1
  /** PNDM starts from unit-variance noise. */
  readonly initNoiseSigma = 1
  /** Timesteps are training-step indices. */
  readonly timestepsDtype = 'int64' as const
  /** ᾱ_t for every training step (float32). */
  readonly alphasCumprod: Float32Array
  private readonly finalAlphaCumprod: number
  private numInferenceSteps: number | null = null
  private schedule: number[] = []
  private prkTimesteps: number[] = []
  private ets: Float32Array[] = []
  private counter = 0
  private curModelOutput: Float32Array | null = null
  private curSample: Float32Array | null = null

  constructor(config: SchedulerConfig = {}) {
    this.config = resolveConfig(PNDM_DEFAULTS, config)
    if (this.config.prediction_type === 'sample') {
      throw new SchedulerError('PNDMScheduler: prediction_type "sample" is not supported')
    }
    this.alphasCumprod = alphasCumprodFromConfig(this.config)
    this.finalAlphaCumprod = finalAlphaCumprod(this.config.set_alpha_to_one, this.alphasCumprod)
  }

  /** The timesteps set by `setTimesteps` (PRK ones first, then PLMS; empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /**
   * Builds the PRK and PLMS timesteps. PLMS repeats its second timestep: the bootstrap step
   * evaluates the model twice there (diffusers' `plms_timesteps`).
   */
  setTimesteps(numInferenceSteps: number): void {
    const n = numInferenceSteps
    const { num_train_timesteps: T, timestep_spacing: spacing, steps_offset } = this.config
    checkNumInferenceSteps(n, T)
    const asc = integerSpacedTimesteps(spacing, n, T, steps_offset).reverse()
    let plms: number[]
    if (this.config.skip_prk_steps) {
      this.prkTimesteps = []
      plms = [...asc.slice(0, -1), ...asc.slice(-2, -1), ...asc.slice(-1)].reverse()
    } else {
      if (asc.length < PNDM_ORDER) {
        throw new SchedulerError(`PNDMScheduler: PRK warm-up needs at least ${PNDM_ORDER} steps`)
      }
      // Each of the last 4 timesteps and its half-step, each evaluated twice (RK4's k2/k3).
      const half = Math.floor(Math.floor(T / n) / 2)
      const pairs = asc.slice(-PNDM_ORDER).flatMap((t) => [t, t + half])
      this.prkTimesteps = pairs
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse()
      plms = asc.slice(0, -3).reverse()
    }
    this.schedule = [...this.prkTimesteps, ...plms]
    this.numInferenceSteps = n
    this.ets = []
    this.counter = 0
    this.curModelOutput = null
    this.curSample = null
  }

  /** x_0 noised to ᾱ(t) (diffusers' `add_noise`). */
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array {
    return vpAddNoise(this.className, this.alphasCumprod, original, noise, t)
  }

  /** PNDM needs no input scaling; returns `sample` unchanged. */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    return sample
  }

  /** One PRK sub-step while warming up, then PLMS steps. */
  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    if (this.numInferenceSteps === null) {
      throw new SchedulerError('PNDMScheduler: call setTimesteps before step')
    }
    const prevSample =
      this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps
        ? this.stepPrk(modelOutput, t, sample)
        : this.stepPlms(modelOutput, t, sample)
    return { prevSample }
  }

  /** Runge–Kutta warm-up (PNDM's "pseudo" RK4 on the ODE of eq. 11). */
  private stepPrk(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const n = this.numInferenceSteps as number
    const diffToPrev =
      this.counter % 2 ? 0 : Math.floor(Math.floor(this.config.num_train_timesteps / n) / 2)
    const prevT = t - diffToPrev
    const timestep = this.prkTimesteps[Math.floor(this.counter / 4) * 4]
    const acc = (w: number) => {
      const cur = this.curModelOutput
      const wf = f(w)
      return modelOutput.map((m, k) => f((cur ? cur[k] : 0) + f(wf * m)))
    }
    let eps = modelOutput
    const phase = this.counter % 4
    if (phase === 0) {
      this.curModelOutput = acc(1 / 6)
      this.ets.push(modelOutput)
      this.curSample = sample
    } else if (phase === 1 || phase === 2) {
      this.curModelOutput = acc(1 / 3)
    } else {
      eps = acc(1 / 6)
      this.curModelOutput = null
    }
    const prev = this.prevSampleFrom(this.curSample ?? sample, timestep, prevT, eps)
    this.counter++
    return prev
  }

  /** Linear multistep on ε̂ (Adams–Bashforth orders 1–4; PNDM eq. 12 for order 4). */
  private stepPlms(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const n = this.numInferenceSteps as number
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new SchedulerError('PNDMScheduler: PLMS step before the 3 PRK warm-up steps')
    }
    const stride = Math.floor(this.config.num_train_timesteps / n)
    let timestep = t
    let prevT = t - stride
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3)
      this.ets.push(modelOutput)
    } else {
      // Second evaluation of the bootstrap step: redo t+stride → t with the averaged ε̂.
      prevT = t
      timestep = t + stride
    }
    const e = this.ets
    const L = e.length
    let eps: Float32Array
    if (L === 1 && this.counter === 0) {
      eps = modelOutput
      this.curSample = sample
    } else if (L === 1 && this.counter === 1) {
      const e1 = e[L - 1]
      eps = modelOutput.map((m, k) => f(f(m + e1[k]) / 2))
      sample = this.curSample as Float32Array
      this.curSample = null
    } else if (L === 2) {
      const [e2, e1] = [e[L - 2], e[L - 1]]
      eps = e1.map((v, k) => f(f(f(3 * v) - e2[k]) / 2))
    } else if (L === 3) {
      const [e3, e2, e1] = [e[L - 3], e[L - 2], e[L - 1]]
      eps = e1.map((v, k) => f(f(f(f(23 * v) - f(16 * e2[k])) + f(5 * e3[k])) / 12))
    } else {
      const [e4, e3, e2, e1] = [e[L - 4], e[L - 3], e[L - 2], e[L - 1]]
      const c = f(1 / 24)
      eps = e1.map((v, k) =>
        f(c * f(f(f(f(55 * v) - f(59 * e2[k])) + f(37 * e3[k])) - f(9 * e4[k]))),
      )
    }
    const prev = this.prevSampleFrom(sample, timestep, prevT, eps)
    this.counter++
    return prev
  }

  /**
   * PNDM's transfer φ(x_t, ε, t, t−δ) (eq. 9):
   * x_{t−δ} = √(ᾱ_{t−δ}/ᾱ_t)·x_t − (ᾱ_{t−δ} − ᾱ_t)·ε / (ᾱ_t·√(1−ᾱ_{t−δ}) + √(ᾱ_t(1−ᾱ_t)ᾱ_{t−δ})).
   */
  private prevSampleFrom(
    sample: Float32Array,
    t: number,
    prevT: number,
    modelOutput: Float32Array,
  ): Float32Array {
    const aT = this.alphaAt(t)
    const aPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod
    const bT = f(1 - aT)
    const bPrev = f(1 - aPrev)
    let eps = modelOutput
    if (this.config.prediction_type === 'v_prediction') {
      const sqA = f(Math.sqrt(aT))
      const sqB = f(Math.sqrt(bT))
      eps = modelOutput.map((v, k) => f(f(sqA * v) + f(sqB * sample[k])))
    }
    const sampleCoef = f(Math.sqrt(f(aPrev / aT)))
    const denom = f(f(aT * f(Math.sqrt(bPrev))) + f(Math.sqrt(f(f(aT * bT) * aPrev))))
    const dA = f(aPrev - aT)
    return sample.map((s, k) => f(f(sampleCoef * s) - f(f(dA * eps[k]) / denom)))
  }

  /** ᾱ at an integer timestep; negative indices wrap like the torch indexing diffusers does. */
  private alphaAt(t: number): number {
    return alphaCumprodAt(this.className, this.alphasCumprod, t)
  }
}
