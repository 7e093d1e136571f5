/**
 * @module
 * The σ-space pieces the σ-schedulers share (Euler, Euler a, Heun, LMS, DPM-Solver++, UniPC): the
 * training σ_t, the inference σ schedule and its timesteps, σ-space preconditioning, the VE x̂_0
 * conversion and the VP (α, σ, λ) of a σ. Each solver keeps its own update rule.
 */
import {
  SchedulerError,
  alphasCumprodFromConfig,
  arangeF64,
  interpOnIndex,
  karrasSigmas,
  linspaceF64,
  roundHalfEven,
  sigmaToT,
  spacedTimesteps,
  trainSigmas,
} from './common'

const f = Math.fround

/**
 * ᾱ_t for a σ-scheduler: as `alphasCumprodFromConfig`, but with `rescale_betas_zero_snr` the last
 * ᾱ is set to 2⁻²⁴ (the fp16 subnormal diffusers uses) so σ_T stays finite.
 */
export function sigmaSafeAlphasCumprod(config: {
  num_train_timesteps: number
  beta_start: number
  beta_end: number
  beta_schedule: string
  trained_betas?: readonly number[] | null
  rescale_betas_zero_snr?: boolean
}): Float32Array {
  const ac = alphasCumprodFromConfig(config)
  if (config.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24
  return ac
}

/** The training σ_t = √((1 − ᾱ_t)/ᾱ_t), ascending in t (float32), from a scheduler config. */
export function sigmaTrainingSchedule(
  config: Parameters<typeof sigmaSafeAlphasCumprod>[0],
): Float32Array {
  return trainSigmas(sigmaSafeAlphasCumprod(config))
}

/** log σ_t of the training sigmas in float32, as `np.log` of the float32 array. */
export function logSigmasOf(sigmas: Float32Array): Float32Array {
  return sigmas.map((s) => f(Math.log(s)))
}

/** Rejects a config asking for more than one σ respacing, as diffusers does. */
export function checkOneSigmaSpacing(
  className: string,
  c: { use_karras_sigmas?: unknown; use_exponential_sigmas?: unknown; use_beta_sigmas?: unknown },
): void {
  if (
    [c.use_karras_sigmas, c.use_exponential_sigmas, c.use_beta_sigmas].filter(Boolean).length > 1
  ) {
    throw new SchedulerError(
      `${className}: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas`,
    )
  }
}

/**
 * The schedule of diffusers' discrete σ-schedulers (Euler, Euler a, Heun, LMS): timesteps spaced
 * per `timestep_spacing` and cast to float32, σ interpolated at them (`np.interp` on the training
 * σ), optionally respaced per Karras et al. 2022 eq. 5 (ρ = 7) or log-uniformly between
 * `sigma_min`/`sigma_max` (default: the interpolated extremes), each σ then mapped back to a
 * fractional t (`_sigma_to_t`). One σ per timestep: the caller appends the final σ.
 */
export function discreteSigmaSchedule(
  c: {
    num_train_timesteps: number
    timestep_spacing: string
    steps_offset: number
    use_karras_sigmas?: boolean
    use_exponential_sigmas?: boolean
    sigma_min?: number | null
    sigma_max?: number | null
  },
  n: number,
  trainSigmas: Float32Array,
): { timesteps: number[]; sigmas: number[] } {
  let ts = spacedTimesteps(c.timestep_spacing, n, c.num_train_timesteps, c.steps_offset).map(f)
  let sigmas = ts.map((t) => interpOnIndex(t, trainSigmas))
  if (c.use_karras_sigmas || c.use_exponential_sigmas) {
    const sMin = c.sigma_min ?? sigmas[sigmas.length - 1]
    const sMax = c.sigma_max ?? sigmas[0]
    sigmas = c.use_karras_sigmas
      ? Array.from(karrasSigmas(sMin, sMax, n))
      : Array.from(linspaceF64(Math.log(sMax), Math.log(sMin), n), Math.exp)
    const logSigmas = logSigmasOf(trainSigmas)
    ts = sigmas.map((s) => f(sigmaToT(s, logSigmas)))
  }
  return { timesteps: ts, sigmas }
}

/**
 * diffusers' `init_noise_sigma` for σ-schedulers: σ_max for linspace/trailing spacing, else
 * √(σ_max² + 1) (the leading schedule's first σ is below σ_max of the latents' prior), in float32.
 */
export function sigmaInitNoise(sigmas: ArrayLike<number>, spacing: string): number {
  let max = 0
  for (let i = 0; i < sigmas.length; i++) max = Math.max(max, sigmas[i])
  max = f(max)
  return spacing === 'linspace' || spacing === 'trailing' ? max : f(Math.sqrt(f(f(max * max) + 1)))
}

/** x / √(σ² + 1): the EDM c_in preconditioning (Karras et al. 2022, Table 1) of `scale_model_input`. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const d = f(Math.sqrt(f(f(sigma * sigma) + 1)))
  return sample.map((x) => f(x / d))
}

/**
 * x̂_0 at noise level σ for a VE σ-scheduler (float32, like diffusers): ε → x − σ·ε;
 * v → c_out·v + c_skip·x with c_out = −σ/√(σ²+1), c_skip = 1/(σ²+1) (Karras et al. 2022, Table 1,
 * σ_data = 1; v of Salimans & Ho 2022); sample → the output itself.
 */
export function sigmaPredictX0(
  predictionType: string,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  const s2 = f(f(sigma * sigma) + 1)
  const vOut = f(-sigma / f(Math.sqrt(s2)))
  const x0 = new Float32Array(sample.length)
  for (let k = 0; k < sample.length; k++) {
    const m = modelOutput[k]
    const s = sample[k]
    if (predictionType === 'epsilon') x0[k] = f(s - f(sigma * m))
    else if (predictionType === 'v_prediction') x0[k] = f(f(m * vOut) + f(s / s2))
    else x0[k] = m
  }
  return x0
}

/** α_t = 1/√(σ²+1), σ_t = σ·α_t: the VP (α, σ) of a VE σ, in float32 like diffusers. */
export function alphaSigma(sigma: number): [number, number] {
  const alpha = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))))
  return [alpha, f(sigma * alpha)]
}

/** λ = log α − log σ, the half log-SNR DPM-Solver steps in (Lu et al. 2022, §3.1); +∞ at σ = 0. */
export function lambdaOf(alpha: number, sigma: number): number {
  return f(f(Math.log(alpha)) - f(Math.log(sigma)))
}

/**
 * The integer timesteps of diffusers' multistep solvers (DPM-Solver, UniPC), descending: `linspace`
 * drops the last of n + 1 rounded points, `leading` uses the ratio ⌊last/(n + 1)⌋, `trailing`
 * steps by T/n from `last`. `last` is T, or fewer where DPM-Solver clips λ.
 */
export function multistepTimesteps(
  spacing: string,
  n: number,
  numTrainTimesteps: number,
  last: number,
  stepsOffset: number,
): number[] {
  switch (spacing) {
    case 'linspace':
      return Array.from(linspaceF64(0, last - 1, n + 1), roundHalfEven)
        .reverse()
        .slice(0, n)
    case 'leading': {
      const ratio = Math.floor(last / (n + 1))
      return Array.from({ length: n }, (_, i) => (n - i) * ratio + stepsOffset)
    }
    case 'trailing':
      return Array.from(arangeF64(last, 0, -numTrainTimesteps / n), (v) => roundHalfEven(v) - 1)
    default:
      throw new SchedulerError(`unknown timestep_spacing ${spacing}`)
  }
}

/**
 * The multistep solvers' `index_for_timestep`: the second match of `t` when there are two, the
 * first when one, and the last index when `t` is absent (diffusers does not throw there).
 */
export function multistepIndexForTimestep(timesteps: readonly number[], t: number): number {
  const hits: number[] = []
  for (let i = 0; i < timesteps.length && hits.length < 2; i++) if (timesteps[i] === t) hits.push(i)
  if (hits.length === 0) return timesteps.length - 1
  return hits.length > 1 ? hits[1] : hits[0]
}

/** diffusers' `add_noise` for σ-parameterised schedulers (Euler, Heun, LMS): x_0 + σ·ε, in float32. */
export function sigmaAddNoise(
  original: Float32Array,
  noise: Float32Array,
  sigma: number,
): Float32Array {
  const out = new Float32Array(original.length)
  for (let k = 0; k < out.length; k++) out[k] = f(original[k] + f(noise[k] * sigma))
  return out
}

/**
 * `add_noise` of the multistep solvers (DPM-Solver, UniPC), which step in VP space: α_t·x_0 +
 * σ_t·ε with α_t = 1/√(σ² + 1), σ_t = σ·α_t.
 */
export function alphaSigmaAddNoise(
  original: Float32Array,
  noise: Float32Array,
  sigma: number,
): Float32Array {
  const [alpha, sigmaT] = alphaSigma(sigma)
  const out = new Float32Array(original.length)
  for (let k = 0; k < out.length; k++) out[k] = f(f(alpha * original[k]) + f(sigmaT * noise[k]))
  return out
}
