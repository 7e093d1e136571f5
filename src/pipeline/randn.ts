/**
 * @module
 * PyTorch's CPU generator and `torch.randn`, bit for bit where the math library allows. diffusers
 * draws the initial latents (and the noise of ancestral samplers) from
 * `torch.Generator('cpu').manual_seed(seed)`, so only this makes a seed give the same image here.
 *
 * The algorithm is the one in `shared/golden/README.md` section 1 (torch 1.13 `normal_kernel`):
 * mt19937 seeded with `init_genrand(seed & 0xffffffff)`; fewer than 16 values use a double
 * Box-Muller that caches its second value in the generator; 16 or more use float32 Box-Muller over
 * blocks of 16, re-drawing the last 16 slots when the count is not a multiple of 16.
 *
 * NOTE: this follows torch's portable scalar kernel. The default AVX2 kernel uses polynomial
 * log/sin/cos, so for 16+ values torch on x86 differs from this by up to ~2e-6.
 *
 * @example
 * const latents = new TorchGenerator(42).randn([1, 4, 64, 64]) // Float32Array(16384)
 */

const MT_N = 624
const MT_M = 397
const MATRIX_A = 0x9908b0df
const UPPER_MASK = 0x80000000
const LOWER_MASK = 0x7fffffff
const TWO_PI = 2 * Math.PI
const TWO_POW_32 = 2 ** 32
const TWO_POW_MINUS_53 = 2 ** -53
const TWO_POW_MINUS_24 = 2 ** -24
const MAX_SEED = 2n ** 64n - 1n
// Below this many values torch takes the double (scalar, cached) path.
const VECTOR_PATH_MIN_NUMEL = 16

/** Low 32 bits of a torch seed (0..2^64-1), after checking its range. */
function seedLow32(seed: number | bigint): number {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed > MAX_SEED) throw new RangeError(`seed must be in 0..2^64-1, got ${seed}`)
    return Number(BigInt.asUintN(32, seed))
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative safe integer (or a bigint), got ${seed}`)
  }
  return seed % TWO_POW_32
}

/** Number of elements of a shape, after checking every dimension. */
function numelOf(shape: readonly number[]): number {
  let numel = 1
  for (const dim of shape) {
    if (!Number.isInteger(dim) || dim < 0) {
      throw new RangeError(`shape must hold non-negative integers, got [${shape.join(', ')}]`)
    }
    numel *= dim
  }
  if (numel > 2 ** 31 - 1) throw new RangeError(`shape [${shape.join(', ')}] is too large`)
  return numel
}

/**
 * torch `normal_fill_16`: Box-Muller in float32 on `d[o..o+15]`, pairing slot j with j+8.
 * Float32Array stores round like C's float assignments; `Math.fround` marks the other float ops.
 */
function boxMuller16(d: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = Math.fround(1 - d[o + j]) // [0, 1) -> (0, 1] for log
    const u2 = d[o + j + 8]
    const radius = Math.fround(Math.sqrt(Math.fround(-2 * Math.fround(Math.log(u1)))))
    // `2.0f * c10::pi<double> * u2`: the product is a double, then stored as float.
    const theta = Math.fround(TWO_PI * u2)
    d[o + j] = radius * Math.fround(Math.cos(theta))
    d[o + j + 8] = radius * Math.fround(Math.sin(theta))
  }
}

/** `torch.Generator('cpu')`: mt19937 state plus the cached second normal of the double path. */
export class TorchGenerator {
  readonly #state = new Uint32Array(MT_N)
  #index = MT_N
  #hasCachedNormal = false
  #cachedNormal = 0

  /** Same as `torch.Generator('cpu').manual_seed(seed)`; seed in 0..2^64-1. */
  constructor(seed: number | bigint) {
    this.manualSeed(seed)
  }

  /** Re-seeds like torch's `manual_seed`: only the low 32 bits reach mt19937; clears the cache. */
  manualSeed(seed: number | bigint): this {
    const s = this.#state
    s[0] = seedLow32(seed)
    for (let i = 1; i < MT_N; i++) {
      const prev = s[i - 1]
      s[i] = Math.imul(1812433253, prev ^ (prev >>> 30)) + i
    }
    this.#index = MT_N
    this.#hasCachedNormal = false
    this.#cachedNormal = 0
    return this
  }

  /** Next raw mt19937 output, an unsigned 32-bit integer. */
  nextUint32(): number {
    if (this.#index >= MT_N) this.#twist()
    let y = this.#state[this.#index++]
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }

  /** `torch.randn(shape, generator=this)` as float32, row-major; advances the generator. */
  randn(shape: readonly number[]): Float32Array {
    const n = numelOf(shape)
    const out = new Float32Array(n)
    if (n < VECTOR_PATH_MIN_NUMEL) {
      for (let i = 0; i < n; i++) out[i] = this.#normalDouble()
      return out
    }
    for (let i = 0; i < n; i++) out[i] = this.#uniformFloat()
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(out, i)
    if (n % 16 !== 0) {
      // torch redraws the last 16 slots, overwriting values the loop above already transformed.
      for (let i = n - 16; i < n; i++) out[i] = this.#uniformFloat()
      boxMuller16(out, n - 16)
    }
    return out
  }

  /** `uniform_real_distribution<float>(0, 1)`: 24 random bits. */
  #uniformFloat(): number {
    return (this.nextUint32() & 0xffffff) * TWO_POW_MINUS_24
  }

  /** `uniform_real_distribution<double>(0, 1)`: 53 bits of `random64()`, first draw high. */
  #uniformDouble(): number {
    const hi = this.nextUint32() & 0x1fffff
    const lo = this.nextUint32()
    return (hi * TWO_POW_32 + lo) * TWO_POW_MINUS_53
  }

  /** `normal_distribution<double>(0, 1)`: Box-Muller returning cos, caching sin for next time. */
  #normalDouble(): number {
    if (this.#hasCachedNormal) {
      this.#hasCachedNormal = false
      return this.#cachedNormal
    }
    const u1 = this.#uniformDouble()
    const u2 = this.#uniformDouble()
    const r = Math.sqrt(-2 * Math.log(1 - u2))
    const theta = TWO_PI * u1
    this.#cachedNormal = r * Math.sin(theta)
    this.#hasCachedNormal = true
    return r * Math.cos(theta)
  }

  /** mt19937 state regeneration (the "twist"). */
  #twist(): void {
    const s = this.#state
    let k = 0
    for (; k < MT_N - MT_M; k++) {
      const y = (s[k] & UPPER_MASK) | (s[k + 1] & LOWER_MASK)
      s[k] = s[k + MT_M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)
    }
    for (; k < MT_N - 1; k++) {
      const y = (s[k] & UPPER_MASK) | (s[k + 1] & LOWER_MASK)
      s[k] = s[k + MT_M - MT_N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)
    }
    const y = (s[MT_N - 1] & UPPER_MASK) | (s[0] & LOWER_MASK)
    s[MT_N - 1] = s[MT_M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0)
    this.#index = 0
  }
}
