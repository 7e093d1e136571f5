/**
 * @module
 * UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
 * Diffusion Models", arXiv:2302.04867), a port of diffusers' `UniPCMultistepScheduler`: a
 * multistep UniP predictor (Alg. 2) followed, on the next call, by the UniC corrector (Alg. 1),
 * which reuses the new model output so the correction costs no extra model call.
 *
 * Supported: `bh1`/`bh2`, `predict_x0` true/false, solver orders 1–3 (any order via a small linear
 * solve), `disable_corrector`, Karras sigmas, `final_sigmas_type` `zero`/`sigma_min`,
 * zero-terminal-SNR rescaling. Not supported (throw): `solver_p`, thresholding,
 * exponential/beta/flow sigmas, dynamic shifting.
 *
 * @example
 * const s = new UniPCMultistepScheduler({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 })
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

/** diffusers' `UniPCMultistepScheduler.__init__` defaults. */
export const UNIPC_DEFAULTS = Object.freeze({
  ...BASE_DEFAULTS,
  solver_order: 2,
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  predict_x0: true,
  solver_type: 'bh2',
  lower_order_final: true,
  disable_corrector: [] as readonly number[],
  solver_p: null as unknown,
  use_karras_sigmas: false as boolean | null,
  use_exponential_sigmas: false as boolean | null,
  use_beta_sigmas: false as boolean | null,
  use_flow_sigmas: false as boolean | null,
  flow_shift: 1.0 as number | null,
  timestep_spacing: 'linspace',
  final_sigmas_type: 'zero',
  rescale_betas_zero_snr: false,
  use_dynamic_shifting: false,
  time_shift_type: 'exponential',
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  shift_terminal: null as number | null,
})

/** λ of a VE σ (via its VP α, σ); +∞ at σ = 0. */
function lambdaOfSigma(sigma: number): number {
  return lambdaOf(...alphaSigma(sigma))
}

/** Solves the small dense system A·x = b by Gaussian elimination with partial pivoting. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length
  const M = A.map((row, i) => [...row, b[i]])
  for (let c = 0; c < n; c++) {
    let p = c
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r
    ;[M[c], M[p]] = [M[p], M[c]]
    if (M[c][c] === 0)
      throw new SchedulerError('UniPCMultistepScheduler: singular coefficient system')
    for (let r = c + 1; r < n; r++) {
      const k = M[r][c] / M[c][c]
      for (let j = c; j <= n; j++) M[r][j] -= k * M[c][j]
    }
  }
  const x = new Array<number>(n).fill(0)
  for (let r = n - 1; r >= 0; r--) {
    let acc = M[r][n]
    for (let j = r + 1; j < n; j++) acc -= M[r][j] * x[j]
    x[r] = acc / M[r][r]
  }
  return x
}

/** The shared scalars of one UniP/UniC update from σ_s0 to σ_t (Zhao et al. 2023, Alg. 1–2). */
interface UniCoefficients {
  alphaT: number
  sigmaT: number
  alphaS0: number
  sigmaS0: number
  /** h·φ_1(h) = e^{hh} − 1 with hh = −h for data prediction. */
  hPhi1: number
  /** B(h): hh for bh1, e^{hh} − 1 for bh2. */
  bH: number
  /** r_k = (λ_{s_k} − λ_{s0})/h for the older outputs, then 1. */
  rks: number[]
  /** b_k = k!·h·φ_{k+1}(h)/B(h) (the right-hand side of the order conditions). */
  b: number[]
}

/** UniPC predictor-corrector over the VP schedule, with diffusers' step-index bookkeeping. */
export class UniPCMultistepScheduler implements Scheduler {
  /** The diffusers class name. */
  readonly className = 'UniPCMultistepScheduler'
  /** The resolved config (diffusers defaults filled in). */
  readonly config: Readonly<typeof UNIPC_DEFAULTS>
  /** One model evaluation per step (the corrector reuses the next step's output). */
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
  private schedule: number[] = []
  private sigmaList = new Float32Array(0)
  private stepIndex: number | null = null
  private beginIndex: number | null = null
  private modelOutputs: (Float32Array | null)[] = []
  private lowerOrderNums = 0
  private lastSample: Float32Array | null = null
  private thisOrder = 1

  constructor(config: SchedulerConfig = {}) {
    const resolved = resolveConfig(UNIPC_DEFAULTS, config)
    let solverType = resolved.solver_type
    // diffusers re-registers DPM-Solver/DEIS solver names as bh2 rather than rejecting them.
    if (['midpoint', 'heun', 'logrho'].includes(solverType)) solverType = 'bh2'
    this.config = Object.freeze({ ...resolved, solver_type: solverType })
    const c = this.config
    const unsupported = (what: string): never => {
      throw new SchedulerError(`UniPCMultistepScheduler: ${what} is not supported`)
    }
    if (solverType !== 'bh1' && solverType !== 'bh2') {
      throw new SchedulerError(`UniPCMultistepScheduler: unknown solver_type ${solverType}`)
    }
    if (!Number.isInteger(c.solver_order) || c.solver_order < 1) {
      throw new SchedulerError('UniPCMultistepScheduler: solver_order must be a positive integer')
    }
    if (c.final_sigmas_type !== 'zero' && c.final_sigmas_type !== 'sigma_min') {
      throw new SchedulerError(
        `UniPCMultistepScheduler: final_sigmas_type must be 'zero' or 'sigma_min', got ${c.final_sigmas_type}`,
      )
    }
    checkOneSigmaSpacing(this.className, c)
    if (!c.predict_x0 && c.final_sigmas_type === 'zero') {
      // The noise-prediction update multiplies σ_t = 0 by e^{h} − 1 = ∞ on the last step: diffusers
      // silently returns NaN there; fail clearly instead.
      throw new SchedulerError(
        "UniPCMultistepScheduler: predict_x0 false needs final_sigmas_type 'sigma_min'",
      )
    }
    if (c.solver_p !== null) unsupported('solver_p')
    if (c.thresholding) unsupported('thresholding')
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
    let ts = multistepTimesteps(c.timestep_spacing, n, T, T, c.steps_offset)

    let sig: number[]
    let sigmaLast: number
    if (c.use_karras_sigmas) {
      // Karras et al. 2022, eq. 5; t recovered from σ by log-linear interpolation.
      const lo = c.sigma_min ?? this.trainSigmas[0]
      const hi = c.sigma_max ?? this.trainSigmas[T - 1]
      sig = Array.from(karrasSigmas(lo, hi, n))
      ts = sig.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)))
      sigmaLast = c.final_sigmas_type === 'sigma_min' ? sig[sig.length - 1] : 0
    } else {
      sig = ts.map((t) => this.trainSigmas[Math.min(Math.max(t, 0), T - 1)])
      sigmaLast = c.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0] : 0
    }
    sig.push(sigmaLast)
    this.sigmaList = Float32Array.from(sig)
    this.schedule = ts
    this.stepIndex = null
    this.beginIndex = null
    this.modelOutputs = new Array(c.solver_order).fill(null)
    this.lowerOrderNums = 0
    this.lastSample = null
    this.thisOrder = 1
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

  /** UniPC needs no input scaling; returns `sample` unchanged (after the setup check). */
  scaleModelInput(sample: Float32Array, _t: number): Float32Array {
    this.checkReady()
    return sample
  }

  /**
   * One UniPC step: first UniC-corrects the current sample with the new model output (Zhao et al.
   * 2023, Alg. 1), then UniP-predicts the next sample from the output history (Alg. 2).
   */
  step(modelOutput: Float32Array, t: number, sample: Float32Array): StepOutput {
    this.checkReady()
    if (this.stepIndex === null)
      this.stepIndex = this.beginIndex ?? multistepIndexForTimestep(this.schedule, t)
    const i = this.stepIndex
    const c = this.config
    const len = this.schedule.length
    if (i >= len)
      throw new SchedulerError('UniPCMultistepScheduler: stepped past the last timestep')

    const useCorrector = i > 0 && !c.disable_corrector.includes(i - 1) && this.lastSample !== null
    const converted = this.convertModelOutput(modelOutput, sample, i)
    let x = sample
    if (useCorrector) x = this.correct(converted, this.lastSample!, sample, this.thisOrder, i)

    this.modelOutputs.shift()
    this.modelOutputs.push(converted)

    const order = c.lower_order_final ? Math.min(c.solver_order, len - i) : c.solver_order
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1) // warm-up for the multistep history
    this.lastSample = x
    const prev = this.predict(x, this.thisOrder, i)
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++
    this.stepIndex = i + 1
    return { prevSample: prev }
  }

  /** x̂_0 (`predict_x0`) or ε̂ from the raw model output at step `i`. */
  private convertModelOutput(m: Float32Array, x: Float32Array, i: number): Float32Array {
    const pt = this.config.prediction_type
    const [alpha, sigma] = alphaSigma(this.sigmaList[i])
    return vpConvertModelOutput(pt, this.config.predict_x0, m, x, alpha, sigma)
  }

  /**
   * Scalars for an update from σ_{s0} = σ[s0] to σ_t = σ[t], with the older outputs at σ[s0 − k]
   * for k = 1..order−1 (Zhao et al. 2023, eq. 8 and Alg. 1–2 with B(h) per `solver_type`).
   */
  private coefficients(tIdx: number, s0Idx: number, order: number): UniCoefficients {
    const s = this.sigmaList
    const [alphaT, sigmaT] = alphaSigma(s[tIdx])
    const [alphaS0, sigmaS0] = alphaSigma(s[s0Idx])
    const lambdaS0 = lambdaOfSigma(s[s0Idx])
    const h = f(lambdaOfSigma(s[tIdx]) - lambdaS0)
    const rks: number[] = []
    for (let k = 1; k < order; k++) rks.push(f(f(lambdaOfSigma(s[s0Idx - k]) - lambdaS0) / h))
    rks.push(1)
    const predictX0 = this.config.predict_x0
    const hh = predictX0 ? -h : h
    const hPhi1 = f(Math.expm1(hh))
    const bH = this.config.solver_type === 'bh1' ? hh : f(Math.expm1(hh))
    const b: number[] = []
    let hPhiK = f(f(hPhi1 / hh) - 1)
    let factorial = 1
    for (let k = 1; k <= order; k++) {
      b.push(f(f(hPhiK * factorial) / bH))
      factorial *= k + 1
      hPhiK = f(f(hPhiK / hh) - f(1 / factorial))
    }
    return { alphaT, sigmaT, alphaS0, sigmaS0, hPhi1, bH, rks, b }
  }

  /** Base first-order step plus Σ_k ρ_k·D1_k: the shared shape of UniP and UniC. */
  private combine(
    co: UniCoefficients,
    x: Float32Array,
    m0: Float32Array,
    terms: { rho: number; d: (k: number) => number }[],
  ): Float32Array {
    const { alphaT, sigmaT, alphaS0, sigmaS0, hPhi1, bH } = co
    const predictX0 = this.config.predict_x0
    const a = predictX0 ? f(sigmaT / sigmaS0) : f(alphaT / alphaS0)
    const b = predictX0 ? f(alphaT * hPhi1) : f(sigmaT * hPhi1)
    const cB = predictX0 ? f(alphaT * bH) : f(sigmaT * bH)
    const out = new Float32Array(x.length)
    for (let k = 0; k < x.length; k++) {
      const base = f(f(a * x[k]) - f(b * m0[k]))
      if (terms.length === 0) {
        out[k] = base
        continue
      }
      let res = 0
      for (const term of terms) res = f(res + f(term.rho * term.d(k)))
      out[k] = f(base - f(cB * res))
    }
    return out
  }

  /** UniP (Zhao et al. 2023, Alg. 2): predicts x at σ[i+1] from outputs up to step `i`. */
  private predict(x: Float32Array, order: number, i: number): Float32Array {
    const co = this.coefficients(i + 1, i, order)
    const mo = this.modelOutputs
    const m0 = mo[mo.length - 1]!
    const terms: { rho: number; d: (k: number) => number }[] = []
    if (order >= 2) {
      // Order 2 uses ρ = ½ directly; higher orders solve the order conditions R·ρ = b.
      const rhos =
        order === 2
          ? [0.5]
          : solve(
              Array.from({ length: order - 1 }, (_, p) => co.rks.slice(0, -1).map((r) => r ** p)),
              co.b.slice(0, order - 1),
            ).map(f)
      for (let k = 1; k < order; k++) {
        const mi = mo[mo.length - 1 - k]!
        const rk = co.rks[k - 1]
        terms.push({ rho: rhos[k - 1], d: (j) => f(f(mi[j] - m0[j]) / rk) })
      }
    }
    return this.combine(co, x, m0, terms)
  }

  /**
   * UniC (Zhao et al. 2023, Alg. 1): re-solves the previous step from `lastSample` at σ[i−1] to
   * σ[i], now including the fresh output `modelT` at σ[i]; returns the corrected sample.
   */
  private correct(
    modelT: Float32Array,
    lastSample: Float32Array,
    _thisSample: Float32Array,
    order: number,
    i: number,
  ): Float32Array {
    const co = this.coefficients(i, i - 1, order)
    const mo = this.modelOutputs
    const m0 = mo[mo.length - 1]!
    // Order 1 uses ρ = ½ directly; otherwise solve the full system R·ρ = b.
    const rhos =
      order === 1
        ? [0.5]
        : solve(
            Array.from({ length: order }, (_, p) => co.rks.map((r) => r ** p)),
            co.b,
          ).map(f)
    const terms: { rho: number; d: (k: number) => number }[] = []
    for (let k = 1; k < order; k++) {
      const mi = mo[mo.length - 1 - k]!
      const rk = co.rks[k - 1]
      terms.push({ rho: rhos[k - 1], d: (j) => f(f(mi[j] - m0[j]) / rk) })
    }
    terms.push({ rho: rhos[rhos.length - 1], d: (j) => f(modelT[j] - m0[j]) })
    return this.combine(co, lastSample, m0, terms)
  }

  private checkReady(): void {
    if (this.schedule.length === 0) {
      throw new SchedulerError('UniPCMultistepScheduler: call setTimesteps before stepping')
    }
  }
}
