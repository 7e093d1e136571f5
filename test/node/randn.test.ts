/**
 * @module
 * TorchGenerator against `torch.randn` in `shared/golden/randn/randn.json` (read in place).
 * Tolerances are the README's: 1e-6 against the scalar kernel (or `values` where the kernels
 * agree), 5e-6 against torch's default AVX2 kernel.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { TorchGenerator } from '../../src/pipeline/randn'

const GOLDEN = fileURLToPath(new URL('../../../shared/golden/', import.meta.url))

const SCALAR_TOL = 1e-6
const AVX2_TOL = 5e-6
// Sums over 16384 values: per-value errors are ~1e-7 and cancel, the observed drift is ~5e-6.
const SCALAR_SUM_TOL = 1e-4
// The AVX2 golden sums themselves differ from the scalar ones by ~3e-4.
const AVX2_SUM_TOL = 2e-3

interface Summary {
  numel: number
  first64: number[]
  last64: number[]
  strided_indices: { start: number; step: number; count: number }
  strided_values: number[]
  sum: number
  sum_sq: number
}
interface Draw {
  shape: number[]
  values: number[]
  values_scalar_kernel?: number[]
}
type Case = { seed: number } & (Draw | (Summary & { shape: number[]; scalar_kernel: Summary }))
interface Sequence {
  seed: number
  name: string
  calls: Draw[]
}

const golden = JSON.parse(readFileSync(GOLDEN + 'randn/randn.json', 'utf8')) as {
  cases: Case[]
  sequences: Sequence[]
}

function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length)
  let m = 0
  for (let i = 0; i < expected.length; i++) m = Math.max(m, Math.abs(actual[i] - expected[i]))
  return m
}

/** Asserts one draw against both kernels' values. */
function expectDraw(out: Float32Array, draw: Draw): void {
  expect(maxAbsDiff(out, draw.values_scalar_kernel ?? draw.values)).toBeLessThanOrEqual(SCALAR_TOL)
  expect(maxAbsDiff(out, draw.values)).toBeLessThanOrEqual(AVX2_TOL)
}

/** Asserts a large draw against a summary (first64, last64, strided values, sums). */
function expectSummary(out: Float32Array, ref: Summary, tol: number, sumTol: number): void {
  expect(out.length).toBe(ref.numel)
  expect(maxAbsDiff(out.subarray(0, 64), ref.first64)).toBeLessThanOrEqual(tol)
  expect(maxAbsDiff(out.subarray(out.length - 64), ref.last64)).toBeLessThanOrEqual(tol)
  const { start, step, count } = ref.strided_indices
  const strided = Array.from({ length: count }, (_, k) => out[start + k * step])
  expect(maxAbsDiff(strided, ref.strided_values)).toBeLessThanOrEqual(tol)
  let sum = 0
  let sumSq = 0
  for (const v of out) {
    sum += v
    sumSq += v * v
  }
  expect(Math.abs(sum - ref.sum)).toBeLessThanOrEqual(sumTol)
  expect(Math.abs(sumSq - ref.sum_sq)).toBeLessThanOrEqual(sumTol)
}

describe('TorchGenerator.randn single draws', () => {
  it('covers the README seeds and shapes', () => {
    expect(golden.cases).toHaveLength(35)
  })

  it.each(golden.cases.map((c) => [c.seed, JSON.stringify(c.shape), c] as const))(
    'seed %i shape %s',
    (seed, _shape, c) => {
      const out = new TorchGenerator(seed).randn(c.shape)
      if ('values' in c) {
        expectDraw(out, c)
      } else {
        expectSummary(out, c.scalar_kernel, SCALAR_TOL, SCALAR_SUM_TOL)
        expectSummary(out, c, AVX2_TOL, AVX2_SUM_TOL)
      }
    },
  )
})

describe('TorchGenerator state carried across calls', () => {
  it.each(golden.sequences.map((s) => [s.seed, s.name, s] as const))(
    'seed %i %s',
    (seed, _name, s) => {
      const generator = new TorchGenerator(seed)
      for (const call of s.calls) expectDraw(generator.randn(call.shape), call)
    },
  )

  it('manualSeed restarts the stream and clears the cached normal', () => {
    const generator = new TorchGenerator(0)
    const first = generator.randn([3])
    generator.randn([17])
    expect(generator.manualSeed(0).randn([3])).toEqual(first)
  })
})

describe('TorchGenerator seeds and shapes', () => {
  it('uses only the low 32 bits of a 64-bit seed, like torch', () => {
    const low = new TorchGenerator(42).randn([20])
    expect(new TorchGenerator(2 ** 32 + 42).randn([20])).toEqual(low)
    expect(new TorchGenerator(2n ** 64n - 2n ** 32n + 42n).randn([20])).toEqual(low)
  })

  it('rejects seeds torch rejects and bad shapes', () => {
    expect(() => new TorchGenerator(-1)).toThrow(RangeError)
    expect(() => new TorchGenerator(0.5)).toThrow(RangeError)
    expect(() => new TorchGenerator(2n ** 64n)).toThrow(RangeError)
    expect(() => new TorchGenerator(0).randn([2, -1])).toThrow(RangeError)
    expect(() => new TorchGenerator(0).randn([1.5])).toThrow(RangeError)
  })

  it('empty and scalar shapes', () => {
    expect(new TorchGenerator(0).randn([0, 4])).toHaveLength(0)
    expect(new TorchGenerator(0).randn([])[0]).toBeCloseTo(1.54099607, 6)
  })

  it('draws [1,4,64,64] quickly', () => {
    const generator = new TorchGenerator(0)
    generator.randn([1, 4, 64, 64])
    const t0 = performance.now()
    for (let i = 0; i < 10; i++) generator.randn([1, 4, 64, 64])
    // ~1 ms each on a laptop; the bound only catches an accidental per-value allocation or BigInt.
    expect((performance.now() - t0) / 10).toBeLessThan(50)
  })
})
