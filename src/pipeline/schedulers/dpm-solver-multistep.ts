/**
 * @module
 * Multistep DPM-Solver / DPM-Solver++ (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver…",
 * arXiv:2206.00927, and "DPM-Solver++: Fast Solver for Guided Sampling…", arXiv:2211.01095), a port
 * of diffusers' `DPMSolverMultistepScheduler`. With `algorithm_type: 'dpmsolver++'`,
 * `solver_order: 2` this is "DPM++ 2M" (Karras sigmas: "DPM++ 2M Karras"), DPM-Solver++ Alg. 2.
 *
 * Supported: `dpmsolver++` and `dpmsolver` (`deis` maps to `dpmsolver++` like diffusers), orders
 * 1–3, `midpoint`/`heun` solver types, Karras and Lu (log-SNR uniform) sigmas, `final_sigmas_type`
 * `zero`/`sigma_min`, `lambda_min_clipped`, zero-terminal-SNR rescaling. Not supported (throw):
 * SDE variants, thresholding, learned variance, exponential/beta/flow sigmas, dynamic shifting.
 *
 * @example
 * const s = new DPMSolverMultistepScheduler({ beta_schedule: 'scaled_linear', use_karras_sigmas: true })
 * s.setTimesteps(20)
 * for (const t of s.timesteps) x = s.step(unet(x, t), t, x).prevSample
 */
import {
  BASE_DEFAULTS,
  SchedulerError,
  addNoiseIndex,
  checkBeginIndex,
  checkNumInferenceSteps,
  karrasSigmas,
  linspaceF64,
  resolveConfig,
  roundHalfEven,
  sigmaToT,
  trainSigmas,
  vpConvertModelOutput,
} from './common'
import {
  alphaSigma,
  alphaSigmaAddNoise,
  checkOneSigmaSpacing,
  lambdaOf,
  logSigmasOf,
  multistepIndexForTimestep,
  multistepTimesteps,
  sigmaSafeAlphasCumprod,
} from './sigmas'
import type { Scheduler, SchedulerConfig, StepOutput } from './types'

const f = Math.fround

/** diffusers' `DPMSolverMultistepScheduler.__init__` defaults. */
export const DPM_SOLVER_MULTISTEP_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  solver_order: 2 as number,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: 'dpmsolver++' as string,
  solver_type: 'midpoint' as string,
  lower_order_final: true,
  euler_at_final: false,
  use_karras_sigmas: false as boolean | null,
  use_exponential_sigmas: false as boolean | null,
  use_beta_sigmas: false as boolean | null,
  use_lu_lambdas: false as boolean | null,
  use_flow_sigmas: false as boolean | null,
  flow_shift: 1.0 as number | null,
  final_sigmas_type: 'zero' as string,
  // JSON has no −∞: configs may carry the string "-Infinity" (see `parseLambdaMinClipped`).
  lambda_min_clipped: -Infinity as number | string,
  variance_type: null as string | null,
  timestep_spacing: 'linspace' as string,
  rescale_betas_zero_snr: false,
  use_dynamic_shifting: false,
  time_shift_type: 'exponential',
})

/** Reads `lambda_min_clipped` from a number or a JSON-safe string such as `"-Infinity"`. */
export function parseLambdaMinClipped(v: unknown): number {
  const x = typeof v === 'string' ? Number(v.trim()) : v
  if (typeof x !== 'number' || Number.isNaN(x)) {
    throw new SchedulerError(`lambda_min_clipped must be a number, got ${JSON.stringify(v)}`)
  }
  return x
}

/** Multistep DPM-Solver(++) over the VP schedule, driven by diffusers' step-index bookkeeping. */
export class DPMSolverMultistepScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'DPMSolverMultistepScheduler'
  /** The resolved config (diffusers defaults filled in; `lambda_min_clipped` as a number). */
  readonly config: Readonly<typeof DPM_SOLVER_MULTISTEP_DEFAULTS>
  /** One model evaluation per step (the multistep history carries the higher order). */
  readonly order = 1
  /** VP schedule: the initial latents are unit-variance noise. */
  readonly initNoiseSigma = 1
  /** Timesteps are integer training steps. */
  readonly timestepsDtype = 'int64' as const
  /** ᾱ_t for every training step (float32). */
  readonly alphasCumprod: Float32Array
  /** σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) for every training step (float32, ascending in t). */
  readonly trainSigmas: Float32Array
  private readonly logSigmas: Float32Array
  private readonly lambdaMinClipped: number
  private schedule: number[] = []
  private sigmaList = new Float32Array(0)
  private stepIndex: number | null = null
  private beginIndex: number | null = null
  private modelOutputs: (Float32Array | null)[] = []
  private lowerOrderNums = 0

  constructor(config: SchedulerConfig = {}) {
    const resolved = resolveConfig(DPM_SOLVER_MULTISTEP_DEFAULTS, config)
    this.lambdaMinClipped = parseLambdaMinClipped(resolved.lambda_min_clipped)
    let algorithm = resolved.algorithm_type
    let solverType = resolved.solver_type
    // diffusers re-registers these DEIS/UniPC names rather than rejecting them.
    if (algorithm === 'deis') algorithm = 'dpmsolver++'
    if (['logrho', 'bh1', 'bh2'].includes(solverType)) solverType = 'midpoint'
    this.config = Object.freeze({
      ...resolved,
      algorithm_type: algorithm,
      solver_type: solverType,
      lambda_min_clipped: this.lambdaMinClipped,
    })
    const c = this.config
    const unsupported = (what: string): never => {
      throw new SchedulerError(`DPMSolverMultistepScheduler: ${what} is not supported`)
    }
    if (algorithm === 'sde-dpmsolver' || algorithm === 'sde-dpmsolver++') unsupported(algorithm)
    if (algorithm !== 'dpmsolver' && algorithm !== 'dpmsolver++') {
      throw new SchedulerError(`DPMSolverMultistepScheduler: unknown algorithm_type ${algorithm}`)
    }
    if (solverType !== 'midpoint' && solverType !== 'heun') {
      throw new SchedulerError(`DPMSolverMultistepScheduler: unknown solver_type ${solverType}`)
    }
    if (![1, 2, 3].includes(c.solver_order)) {
      throw new SchedulerError(`DPMSolverMultistepScheduler: solver_order must be 1, 2 or 3`)
    }
    if (c.final_sigmas_type !== 'zero' && c.final_sigmas_type !== 'sigma_min') {
      throw new SchedulerError(
        `DPMSolverMultistepScheduler: final_sigmas_type must be 'zero' or 'sigma_min', got ${c.final_sigmas_type}`,
      )
    }
    if (algorithm === 'dpmsolver' && c.final_sigmas_type === 'zero') {
      throw new SchedulerError(
        "DPMSolverMultistepScheduler: final_sigmas_type 'zero' needs algorithm_type dpmsolver++; use 'sigma_min'",
      )
    }
    checkOneSigmaSpacing(this.className, c)
    if (c.thresholding) unsupported('thresholding')
    if (c.variance_type !== null) unsupported(`variance_type ${c.variance_type}`)
    if (c.use_exponential_sigmas) unsupported('use_exponential_sigmas')
    if (c.use_beta_sigmas) unsupported('use_beta_sigmas')
    if (c.use_flow_sigmas) unsupported('use_flow_sigmas')
    if (c.use_dynamic_shifting) unsupported('use_dynamic_shifting')

    this.alphasCumprod = sigmaSafeAlphasCumprod(c)
    this.trainSigmas = trainSigmas(this.alphasCumprod)
    this.logSigmas = logSigmasOf(this.trainSigmas)
  }

  /** The timesteps set by `setTimesteps` (empty before). */
  get timesteps(): readonly number[] {
    return this.schedule
  }

  /** σ per timestep plus the final σ (empty before `setTimesteps`). */
  get sigmas(): Float32Array {
    return this.sigmaList
  }

  /** Builds the timestep/σ schedule for `numInferenceSteps` steps and clears the history. */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config
    const T = c.num_train_timesteps
    const n = numInferenceSteps
    checkNumInferenceSteps(n, T)
    // Clip λ(t) from below for numerical stability (matters for the cosine schedule):
    // searchsorted over λ ascending (t descending).
    let clipped = 0
    for (let i = T - 1; i >= 0; i--) {
      const [a, s] = [
        f(Math.sqrt(this.alphasCumprod[i])),
        f(Math.sqrt(f(1 - this.alphasCumprod[i]))),
      ]
      if (lambdaOf(a, s) >= this.lambdaMinClipped) break
      clipped++
    }
    const last = T - clipped

    let ts = multistepTimesteps(c.timestep_spacing, n, T, last, c.steps_offset)

    let sig: number[]
    if (c.use_karras_sigmas) {
      // Karras et al. 2022, eq. 5, between the extreme training sigmas; t recovered from σ.
      sig = Array.from(karrasSigmas(this.trainSigmas[0], this.trainSigmas[T - 1], n))
      ts = sig.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)))
    } else if (c.use_lu_lambdas) {
      // Lu et al. 2022 (DPM-Solver §3.3): uniform steps in log σ (i.e. in λ).
      const hi = this.logSigmas[T - 1]
      const lo = this.logSigmas[0]
      sig = Array.from(linspaceF64(hi, lo, n), Math.exp)
      ts = sig.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)))
    } else {
      sig = ts.map((t) => this.trainSigmas[Math.min(Math.max(t, 0), T - 1)])
    }
    sig.push(c.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0] : 0)
    this.sigmaList = Float32Array.from(sig)
    this.schedule = ts
    this.stepIndex = null
    this.beginIndex = null
    this.modelOutputs = new Array(c.solver_order).fill(null)
    this.lowerOrderNums = 0
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
      multistepIndexForTimestep(this.schedule, t),
    )
    return alphaSigmaAddNoise(original, noise, this.sigmaList![i])
  }

  /** DPM-Solver needs no input scaling; returns `sample` unchanged (after the setup check). */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    this.checkReady()
    return sample
  }

  /**
   * One multistep update (DPM-Solver++ Alg. 2 for `dpmsolver++`): converts the model output to x̂_0
   * (or ε̂ for `dpmsolver`), then takes a first-, second- or third-order step from the stored
   * history, falling back to lower orders at the start and, for few steps, at the end.
   */
  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    this.checkReady()
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? multistepIndexForTimestep(this.schedule, t)
    const i = this.stepIndex
    const c = this.config
    const len = this.schedule.length
    if (i >= len)
      throw new SchedulerError('DPMSolverMultistepScheduler: stepped past the last timestep')

    // Lower orders near the end are more stable for few steps (< 15); a final σ of 0 always
    // ends with a first-order step.
    const lowerOrderFinal =
      i === len - 1 &&
      (c.euler_at_final || (c.lower_order_final && len < 15) || c.final_sigmas_type === 'zero')
    const lowerOrderSecond = i === len - 2 && c.lower_order_final && len < 15

    const converted = this.convertModelOutput(modelOutput, sample, i)
    this.modelOutputs.shift()
    this.modelOutputs.push(converted)

    let prev: Float32Array
    if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrderUpdate(converted, sample, i)
    } else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prev = this.secondOrderUpdate(sample, i)
    } else {
      prev = this.thirdOrderUpdate(sample, i)
    }
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++
    this.stepIndex = i + 1
    return { prevSample: prev }
  }

  /** x̂_0 (DPM-Solver++) or ε̂ (DPM-Solver) from the raw model output at step `i`. */
  private convertModelOutput(m: Float32Array, x: Float32Array, i: number): Float32Array {
    const pt = this.config.prediction_type
    const [alpha, sigma] = alphaSigma(this.sigmaList[i])
    return vpConvertModelOutput(
      pt,
      this.config.algorithm_type === 'dpmsolver++',
      m,
      x,
      alpha,
      sigma,
    )
  }

  /** First order (DDIM-equivalent): x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·x̂_0 (DPM-Solver++ eq. 5). */
  private firstOrderUpdate(m: Float32Array, x: Float32Array, i: number): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(this.sigmaList[i + 1])
    const [alphaS, sigmaS] = alphaSigma(this.sigmaList[i])
    const h = f(lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS, sigmaS))
    const out = new Float32Array(x.length)
    if (this.config.algorithm_type === 'dpmsolver++') {
      const a = f(sigmaT / sigmaS)
      const b = f(alphaT * f(f(Math.exp(-h)) - 1))
      for (let k = 0; k < x.length; k++) out[k] = f(f(a * x[k]) - f(b * m[k]))
    } else {
      const a = f(alphaT / alphaS)
      const b = f(sigmaT * f(f(Math.exp(h)) - 1))
      for (let k = 0; k < x.length; k++) out[k] = f(f(a * x[k]) - f(b * m[k]))
    }
    return out
  }

  /**
   * Second-order multistep update (DPM-Solver++ Alg. 2): D0 = m_0, D1 = (m_0 − m_1)/r_0 with
   * r_0 = h_{i−1}/h_i, then the midpoint (or Heun) combination of D0 and D1.
   */
  private secondOrderUpdate(x: Float32Array, i: number): Float32Array {
    const s = this.sigmaList
    const [alphaT, sigmaT] = alphaSigma(s[i + 1])
    const [alphaS0, sigmaS0] = alphaSigma(s[i])
    const [alphaS1, sigmaS1] = alphaSigma(s[i - 1])
    const lambdaT = lambdaOf(alphaT, sigmaT)
    const lambdaS0 = lambdaOf(alphaS0, sigmaS0)
    const lambdaS1 = lambdaOf(alphaS1, sigmaS1)
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!
    const h = f(lambdaT - lambdaS0)
    const h0 = f(lambdaS0 - lambdaS1)
    const invR0 = f(1 / f(h0 / h))
    const plus = this.config.algorithm_type === 'dpmsolver++'
    const midpoint = this.config.solver_type === 'midpoint'
    const out = new Float32Array(x.length)
    if (plus) {
      const a = f(sigmaT / sigmaS0)
      const em1 = f(f(Math.exp(-h)) - 1)
      const b = f(alphaT * em1)
      // midpoint: −½·α_t(e^{−h} − 1)·D1; heun: +α_t((e^{−h} − 1)/h + 1)·D1
      const d = midpoint ? f(0.5 * b) : f(-f(alphaT * f(f(em1 / h) + 1)))
      for (let k = 0; k < x.length; k++) {
        const d1 = f(invR0 * f(m0[k] - m1[k]))
        out[k] = f(f(f(a * x[k]) - f(b * m0[k])) - f(d * d1))
      }
    } else {
      const a = f(alphaT / alphaS0)
      const ep1 = f(f(Math.exp(h)) - 1)
      const b = f(sigmaT * ep1)
      const d = midpoint ? f(0.5 * b) : f(sigmaT * f(f(ep1 / h) - 1))
      for (let k = 0; k < x.length; k++) {
        const d1 = f(invR0 * f(m0[k] - m1[k]))
        out[k] = f(f(f(a * x[k]) - f(b * m0[k])) - f(d * d1))
      }
    }
    return out
  }

  /** Third-order multistep update (DPM-Solver++, Lu et al. 2022, multistep 3M in the appendix). */
  private thirdOrderUpdate(x: Float32Array, i: number): Float32Array {
    const s = this.sigmaList
    const [alphaT, sigmaT] = alphaSigma(s[i + 1])
    const [alphaS0, sigmaS0] = alphaSigma(s[i])
    const lam = (sig: number): number => lambdaOf(...alphaSigma(sig))
    const lambdaT = lambdaOf(alphaT, sigmaT)
    const lambdaS0 = lambdaOf(alphaS0, sigmaS0)
    const lambdaS1 = lam(s[i - 1])
    const lambdaS2 = lam(s[i - 2])
    const mo = this.modelOutputs
    const m0 = mo[mo.length - 1]!
    const m1 = mo[mo.length - 2]!
    const m2 = mo[mo.length - 3]!
    const h = f(lambdaT - lambdaS0)
    const r0 = f(f(lambdaS0 - lambdaS1) / h)
    const r1 = f(f(lambdaS1 - lambdaS2) / h)
    const c10 = f(1 / r0)
    const c11 = f(1 / r1)
    const c1 = f(r0 / f(r0 + r1))
    const c2 = f(1 / f(r0 + r1))
    const out = new Float32Array(x.length)
    const plus = this.config.algorithm_type === 'dpmsolver++'
    let a: number, b0: number, b1: number, b2: number
    if (plus) {
      const em1 = f(f(Math.exp(-h)) - 1)
      a = f(sigmaT / sigmaS0)
      b0 = f(-f(alphaT * em1))
      b1 = f(alphaT * f(f(em1 / h) + 1))
      b2 = f(-f(alphaT * f(f(f(em1 + h) / f(h * h)) - 0.5)))
    } else {
      const ep1 = f(f(Math.exp(h)) - 1)
      a = f(alphaT / alphaS0)
      b0 = f(-f(sigmaT * ep1))
      b1 = f(-f(sigmaT * f(f(ep1 / h) - 1)))
      b2 = f(-f(sigmaT * f(f(f(ep1 - h) / f(h * h)) - 0.5)))
    }
    for (let k = 0; k < x.length; k++) {
      const d10 = f(c10 * f(m0[k] - m1[k]))
      const d11 = f(c11 * f(m1[k] - m2[k]))
      const d1 = f(d10 + f(c1 * f(d10 - d11)))
      const d2 = f(c2 * f(d10 - d11))
      out[k] = f(f(f(f(a * x[k]) + f(b0 * m0[k])) + f(b1 * d1)) + f(b2 * d2))
    }
    return out
  }

  private checkReady(): void {
    if (this.schedule.length === 0) {
      throw new SchedulerError('DPMSolverMultistepScheduler: call setTimesteps before stepping')
    }
  }
}
