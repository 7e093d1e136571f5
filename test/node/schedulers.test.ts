/**
 * @module
 * Every scheduler against diffusers, driven by the golden fake-model loop of
 * `shared/golden/schedulers` (README section 2, read in place): timesteps exact, sigmas to 1e-6
 * relative, every step's tensors to 1e-5·max(1, max|ref|). The noise that ancestral schedulers draw
 * is replayed from the recorded `noise_drawn`, so the scheduler math is tested apart from randn;
 * a second pass draws it from `TorchGenerator` instead.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  SCHEDULER_CLASSES,
  SchedulerError,
  createScheduler,
  type NoiseGenerator,
  type Scheduler,
  type StepOptions,
} from '../../src/pipeline/schedulers/index'
import { TorchGenerator } from '../../src/pipeline/randn'

const GOLDEN = fileURLToPath(new URL('../../../shared/golden/schedulers/', import.meta.url))
const f = Math.fround

interface GoldenStep {
  i: number
  t: number
  model_input: number[]
  model_output: number[]
  prev_sample: number[]
  pred_original_sample?: number[]
  denoised?: number[]
  noise_drawn?: number[][]
}
interface GoldenCase {
  scheduler: string
  config_name: string
  num_inference_steps: number
  config: Record<string, unknown>
  config_full: Record<string, unknown>
  order: number
  timesteps: number[]
  timesteps_dtype: 'int64' | 'float32'
  sigmas?: number[]
  init_noise_sigma: number
  start: { noise: number[]; sample: number[] }
  step_kwargs: Record<string, unknown>
  steps: GoldenStep[]
  final_sample: number[]
}

const readJson = (name: string) => JSON.parse(readFileSync(GOLDEN + name, 'utf8'))
// JSON has no −∞; the README writes it as the string "-Infinity".
const revive = (c: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v === '-Infinity' ? -Infinity : v]))
const INDEX: { cases: { file: string; scheduler: string }[] } = readJson('index.json')
const loadCase = (file: string): GoldenCase => readJson(file)

/** The README's fake model, in float32: input·0.3 + 0.1·cos(t/137). */
function fakeModel(input: Float32Array, t: number): Float32Array {
  const b = f(f(0.1) * f(Math.cos(f(f(t) / 137))))
  return input.map((v) => f(f(v * f(0.3)) + b))
}

/** max|a − ref| ≤ tol·max(1, max|ref|), the README's tensor tolerance. */
function expectClose(
  actual: ArrayLike<number> | undefined,
  ref: number[],
  label: string,
  tol = 1e-5,
) {
  expect(actual, label).toBeDefined()
  expect(actual!.length, `${label}: length`).toBe(ref.length)
  let maxRef = 1
  let maxErr = 0
  for (let k = 0; k < ref.length; k++) {
    maxRef = Math.max(maxRef, Math.abs(ref[k]))
    const e = Math.abs(actual![k] - ref[k])
    maxErr = Number.isNaN(e) ? Infinity : Math.max(maxErr, e)
  }
  if (maxErr > tol * maxRef) {
    expect.fail(`${label}: max|a−ref| = ${maxErr.toExponential(3)} > ${tol}·${maxRef.toFixed(3)}`)
  }
}

/** A generator that hands back recorded draws in order, checking each requested size. */
class ReplayGenerator implements NoiseGenerator {
  private queue: number[][] = []
  constructor(private readonly label: string) {}
  load(draws: number[][] | undefined): void {
    expect(this.queue, `${this.label}: draws left over`).toHaveLength(0)
    this.queue = [...(draws ?? [])]
  }
  randn(shape: readonly number[]): Float32Array {
    const next = this.queue.shift()
    if (!next) return expect.fail(`${this.label}: unexpected randn(${JSON.stringify(shape)})`)
    expect(
      shape.reduce((a, b) => a * b, 1),
      `${this.label}: numel`,
    ).toBe(next.length)
    return Float32Array.from(next)
  }
  done(): void {
    expect(this.queue, `${this.label}: recorded draws not taken`).toHaveLength(0)
  }
}

/** Runs the README loop; `draw` supplies the generator for each step. */
function runLoop(
  g: GoldenCase,
  generatorFor: (step: GoldenStep) => NoiseGenerator,
  tol: number,
  check: (s: Scheduler) => void = () => {},
) {
  const s = createScheduler(g.scheduler, revive(g.config))
  s.setTimesteps(g.num_inference_steps)
  check(s)
  let x: Float32Array = Float32Array.from(g.start.noise, (v) => f(v * f(s.initNoiseSigma)))
  expectClose(x, g.start.sample, 'start sample', tol)
  for (const step of g.steps) {
    const label = `step ${step.i} (t=${step.t})`
    const t = s.timesteps[step.i]
    expect(t, `${label}: t`).toBe(step.t)
    const input = s.scaleModelInput(x, t)
    expectClose(input, step.model_input, `${label}: model_input`, tol)
    const options: StepOptions = {}
    if ('eta' in g.step_kwargs) options.eta = g.step_kwargs.eta as number
    if ('generator' in g.step_kwargs) options.generator = generatorFor(step)
    const out = s.step(fakeModel(input, t), t, x, options)
    const x0 = step.pred_original_sample ?? step.denoised
    if (x0) expectClose(out.predOriginalSample, x0, `${label}: x̂_0`, tol)
    expectClose(out.prevSample, step.prev_sample, `${label}: prev_sample`, tol)
    x = out.prevSample
  }
  expectClose(x, g.final_sample, 'final_sample', tol)
}

const byClass = new Map<string, string[]>()
for (const c of INDEX.cases) byClass.set(c.scheduler, [...(byClass.get(c.scheduler) ?? []), c.file])

describe('schedulers against diffusers (golden fake-model loop)', () => {
  it('covers the 84 golden cases', () => expect(INDEX.cases).toHaveLength(84))

  for (const [cls, files] of byClass) {
    describe(cls, () => {
      it.each(files)('%s', (file) => {
        const g = loadCase(file)
        const replay = new ReplayGenerator(file)
        runLoop(
          g,
          (step) => {
            replay.load(step.noise_drawn)
            return replay
          },
          1e-5,
          (s) => {
            expect(s.className).toBe(g.scheduler)
            expect([...s.timesteps]).toEqual(g.timesteps)
            expect(s.timestepsDtype).toBe(g.timesteps_dtype)
            expect(s.order).toBe(g.order)
            expect(Math.abs(s.initNoiseSigma - g.init_noise_sigma)).toBeLessThanOrEqual(
              1e-6 * Math.abs(g.init_noise_sigma),
            )
            if (g.sigmas) {
              expect(s.sigmas, 'sigmas').toBeDefined()
              expect(s.sigmas!.length).toBe(g.sigmas.length)
              g.sigmas.forEach((ref, k) =>
                expect(Math.abs(s.sigmas![k] - ref), `sigma[${k}]`).toBeLessThanOrEqual(
                  1e-6 * Math.abs(ref),
                ),
              )
            }
            // Every config key we expose must hold diffusers' value.
            for (const [k, v] of Object.entries(s.config)) {
              if (k in g.config_full) expect(v, `config.${k}`).toEqual(revive(g.config_full)[k])
            }
          },
        )
        replay.done()
      })
    })
  }
})

const ancestral = INDEX.cases.filter((c) =>
  loadCase(c.file).steps.some((s) => s.noise_drawn?.length),
)

describe('ancestral schedulers with TorchGenerator(123)', () => {
  it.each(ancestral.map((c) => c.file))('%s', (file) => {
    const g = loadCase(file)
    const gen: NoiseGenerator = new TorchGenerator(123)
    // The golden noise is torch's AVX2 kernel, ours its scalar kernel: ≤ 5e-6 apart per value.
    const checked: NoiseGenerator = {
      randn(shape) {
        const z = gen.randn(shape)
        const step = current!
        const ref = step.noise_drawn?.[drawn++]
        if (!ref) return expect.fail(`${file}: unexpected draw at step ${step.i}`)
        expectClose(z, ref, `${file} step ${step.i} noise`, 5e-6)
        return z
      },
    }
    let current: GoldenStep | undefined
    let drawn = 0
    runLoop(
      g,
      (step) => {
        current = step
        drawn = 0
        return checked
      },
      1e-4,
    )
  })
})

describe('scheduler errors and names', () => {
  const SD15 = {
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    steps_offset: 1,
  }
  const names = Object.keys(SCHEDULER_CLASSES)
  const x = new Float32Array(64).fill(0.5)

  it.each(names)('%s: step before setTimesteps throws SchedulerError', (name) => {
    const s = createScheduler(name, SD15)
    expect(() =>
      s.step(x, 999, x, { generator: { randn: (sh) => new Float32Array(sh[0]) } }),
    ).toThrow(SchedulerError)
  })

  it.each([
    'EulerDiscreteScheduler',
    'EulerAncestralDiscreteScheduler',
    'HeunDiscreteScheduler',
    'LMSDiscreteScheduler',
  ])('%s: scaleModelInput before setTimesteps throws SchedulerError', (name) => {
    expect(() => createScheduler(name, SD15).scaleModelInput(x, 999)).toThrow(SchedulerError)
  })

  it.each(names)('%s: 0, negative and fractional step counts throw', (name) => {
    const s = createScheduler(name, SD15)
    for (const n of [0, -1, 2.5, NaN, 1001])
      expect(() => s.setTimesteps(n), `n=${n}`).toThrow(SchedulerError)
  })

  it.each(names)('%s: unknown prediction_type throws', (name) => {
    expect(() => createScheduler(name, { ...SD15, prediction_type: 'flow' })).toThrow(
      SchedulerError,
    )
  })

  it('unknown scheduler name throws and lists the names', () => {
    expect(() => createScheduler('euler_b')).toThrow(SchedulerError)
    expect(() => createScheduler('euler_b')).toThrow(/euler_a/)
  })

  it('resolves aliases and class names', () => {
    expect(createScheduler('euler_a').className).toBe('EulerAncestralDiscreteScheduler')
    expect(createScheduler('Euler_A').className).toBe('EulerAncestralDiscreteScheduler')
    expect(createScheduler('plms').config).toMatchObject({ skip_prk_steps: true })
    for (const name of names) expect(createScheduler(name).className).toBe(name)
    const karras = createScheduler('dpmpp_2m_karras', SD15)
    expect(karras.className).toBe('DPMSolverMultistepScheduler')
    expect(karras.config).toMatchObject({
      algorithm_type: 'dpmsolver++',
      solver_order: 2,
      use_karras_sigmas: true,
    })
    // The alias gives diffusers' "DPM++ 2M Karras" schedule.
    const g = loadCase('DPMSolverMultistepScheduler__sd15-karras__20.json')
    const s = createScheduler('dpmpp_2m_karras', { ...g.config, use_karras_sigmas: false })
    s.setTimesteps(20)
    expect([...s.timesteps]).toEqual(g.timesteps)
  })
})

describe('scheduler options beyond the golden configs', () => {
  const SD15 = {
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    steps_offset: 1,
    set_alpha_to_one: false,
  }

  it('DDIM with eta > 0 draws one noise tensor per step and needs a generator', () => {
    const s = createScheduler('ddim', { ...SD15, clip_sample: false })
    s.setTimesteps(4)
    const x = new Float32Array(64).fill(1)
    const draws: number[] = []
    const gen: NoiseGenerator = {
      randn: (shape) => (draws.push(shape[0]), new Float32Array(shape[0])),
    }
    const det = s.step(x, 751, x, { eta: 0 }).prevSample
    const noisy = s.step(x, 751, x, { eta: 1, generator: gen }).prevSample
    expect(draws).toEqual([64])
    // With z = 0 the only change is the smaller direction term √(1 − ᾱ_prev − σ²).
    expect(noisy[0]).not.toBe(det[0])
    expect(() => s.step(x, 751, x, { eta: 1 })).toThrow(SchedulerError)
  })

  it('DDIM clip_sample bounds x̂_0 to clip_sample_range', () => {
    const s = createScheduler('ddim', { ...SD15, clip_sample: true, clip_sample_range: 0.5 })
    s.setTimesteps(10)
    const x = new Float32Array(16).map((_, k) => (k - 8) * 3)
    const x0 = s.step(new Float32Array(16), s.timesteps[0], x).predOriginalSample!
    expect(Math.max(...x0.map(Math.abs))).toBe(0.5)
  })

  it('DDIM trailing and linspace spacings follow diffusers', () => {
    const trailing = createScheduler('ddim', { ...SD15, timestep_spacing: 'trailing' })
    trailing.setTimesteps(4)
    expect([...trailing.timesteps]).toEqual([999, 749, 499, 249])
    const linspace = createScheduler('ddim', { ...SD15, timestep_spacing: 'linspace' })
    linspace.setTimesteps(4)
    expect([...linspace.timesteps]).toEqual([999, 666, 333, 0])
    // np.round is half-to-even: linspace(0, 999, 3) = [0, 499.5, 999] → 500 (and 1000/16 → 812.5 → 812)
    linspace.setTimesteps(3)
    expect([...linspace.timesteps]).toEqual([999, 500, 0])
    trailing.setTimesteps(16)
    expect(trailing.timesteps[3]).toBe(811)
  })

  it('PNDM with PRK warm-up (skip_prk_steps false) runs its Runge–Kutta steps', () => {
    const s = createScheduler('PNDMScheduler', { ...SD15, skip_prk_steps: false })
    s.setTimesteps(10)
    // The 4 noisiest timesteps and their half steps, each twice but the ends (12), then PLMS.
    expect(s.timesteps.slice(0, 12)).toEqual([
      901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601,
    ])
    expect(s.timesteps.slice(12)).toEqual([601, 501, 401, 301, 201, 101, 1])
    let x: Float32Array = new Float32Array(8).fill(1)
    for (const t of s.timesteps) x = s.step(fakeModel(x, t), t, x).prevSample
    expect(x.every(Number.isFinite)).toBe(true)
  })

  it('Euler with Karras sigmas (Karras et al. eq. 5) spans the interpolated σ range', () => {
    const s = createScheduler('euler', { ...SD15, use_karras_sigmas: true })
    s.setTimesteps(10)
    const sig = s.sigmas!
    expect(sig).toHaveLength(11)
    expect(sig[10]).toBe(0)
    for (let i = 1; i < 10; i++) expect(sig[i]).toBeLessThan(sig[i - 1])
    // The Karras timesteps are fractional and decreasing, from the first (linspace) timestep.
    expect(s.timesteps[0]).toBeCloseTo(999, 0)
    for (let i = 1; i < 10; i++) expect(s.timesteps[i]).toBeLessThan(s.timesteps[i - 1])
  })

  it('Euler a needs a generator; LCM needs one except on the last step', () => {
    const e = createScheduler('euler_a', SD15)
    e.setTimesteps(2)
    const x = new Float32Array(4)
    expect(() => e.step(x, e.timesteps[0], x)).toThrow(SchedulerError)
    const lcm = createScheduler('lcm')
    lcm.setTimesteps(1)
    expect(() => lcm.step(x, lcm.timesteps[0], x)).not.toThrow()
  })
})

describe('add_noise and set_begin_index (image-to-image) on every scheduler', () => {
  const SD15 = {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    steps_offset: 1,
  }
  const x0 = Float32Array.from({ length: 8 }, (_, i) => i / 4 - 1)
  const eps = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i))
  const f = Math.fround

  it.each(['ddim', 'ddpm', 'pndm', 'lcm'])('%s: √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε at t', (name) => {
    const s = createScheduler(name, SD15) as unknown as {
      alphasCumprod: Float32Array
    } & ReturnType<typeof createScheduler>
    s.setTimesteps(10)
    const t = s.timesteps[3]
    const a = s.alphasCumprod[t]
    const got = s.addNoise(x0, eps, t)
    const want = x0.map((x, k) => f(f(f(Math.sqrt(a)) * x) + f(f(Math.sqrt(f(1 - a))) * eps[k])))
    expect([...got]).toEqual([...want])
  })

  it.each(['euler', 'euler_a', 'heun', 'lms', 'dpmpp_2m', 'unipc'])(
    '%s: the begin index picks σ for add_noise and the first step',
    (name) => {
      const s = createScheduler(name, SD15)
      s.setTimesteps(10)
      const begin = 3 * s.order
      s.setBeginIndex!(begin)
      const sigma = s.sigmas![begin]
      const got = s.addNoise(x0, eps, s.timesteps[begin])
      const multistep = name === 'dpmpp_2m' || name === 'unipc'
      const alpha = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))))
      const want = multistep
        ? x0.map((x, k) => f(f(alpha * x) + f(f(sigma * alpha) * eps[k])))
        : x0.map((x, k) => f(x + f(eps[k] * sigma)))
      expect([...got]).toEqual([...want])
      // The loop starts there too: the first scaled input uses that σ (σ-space schedulers).
      if (!multistep) {
        const scaled = s.scaleModelInput(got, s.timesteps[begin])
        expect(scaled[1]).toBeCloseTo(got[1] / Math.sqrt(sigma * sigma + 1), 5)
      }
    },
  )

  it('refuses a begin index outside the schedule', () => {
    const s = createScheduler('euler', SD15)
    s.setTimesteps(4)
    expect(() => s.setBeginIndex!(4)).toThrow(/begin index 4 is outside 0..3/)
  })
})
