/**
 * @module
 * Runtime-neutral tensors and sessions. `src/pipeline` speaks only these types; the modules in
 * `src/gpu` translate them to and from ONNX Runtime, so no pipeline code imports onnxruntime.
 */

/** Element types the pipeline exchanges with models. */
export type TensorType = 'float32' | 'float16' | 'float64' | 'int32' | 'int64' | 'uint8'

/** Typed-array storage for each `TensorType` (float16 travels as raw bits). */
export interface TensorStorage {
  float32: Float32Array
  float16: Uint16Array
  float64: Float64Array
  int32: Int32Array
  int64: BigInt64Array
  uint8: Uint8Array
}

/** A dense row-major tensor. */
export interface Tensor<T extends TensorType = TensorType> {
  type: T
  data: TensorStorage[T]
  dims: readonly number[]
}

/** Name, element type and shape (numbers, or symbolic names for dynamic axes) of a model input or output. */
export interface ValueInfo {
  name: string
  type: string
  shape: readonly (number | string)[]
}

/** A loaded model, ready to run. Implementations serialise `run` where their runtime needs it. */
export interface ModelSession {
  /** Input metadata read from the model file. */
  readonly inputs: readonly ValueInfo[]
  /** Output metadata read from the model file. */
  readonly outputs: readonly ValueInfo[]
  /** Runs the model; returns every output (or those named). */
  run(
    feeds: Record<string, Tensor>,
    outputNames?: readonly string[],
  ): Promise<Record<string, Tensor>>
  /** Frees native or WebAssembly memory held by the session. */
  release(): Promise<void>
}

/**
 * An ONNX model to load: its bytes (external weight files, if any, in `externalData`, named as
 * the model refers to them), or the path of `model.onnx` on disk, for a runtime that reads the
 * file and its external data itself (`InferenceBackend.readsFiles`) without a copy in JS memory.
 */
export type ModelFile =
  | { bytes: Uint8Array; externalData?: { path: string; data: Uint8Array }[] }
  | { path: string }

/** Creates sessions on one execution provider chain (CPU, WebAssembly, WebGPU, CUDA …). */
export interface InferenceBackend {
  /** Human-readable name, e.g. `onnxruntime-node:cpu`. */
  readonly name: string
  /** Whether `createSession` takes `{ path }` (native runtimes that read files themselves). */
  readonly readsFiles?: boolean
  /** Loads an ONNX model. */
  createSession(model: ModelFile, options?: { label?: string }): Promise<ModelSession>
}

/** Builds a float tensor of the type a model declares, converting float32 values to it. */
export function floats(
  type: 'float32' | 'float16',
  data: Float32Array,
  dims: readonly number[],
): Tensor<'float32' | 'float16'> {
  checkSize(data.length, dims)
  return type === 'float32' ? { type, data, dims } : { type, data: toFloat16Bits(data), dims }
}

/** Builds a float32 tensor. */
export function float32(data: Float32Array, dims: readonly number[]): Tensor<'float32'> {
  checkSize(data.length, dims)
  return { type: 'float32', data, dims }
}

/** A tensor of plain numbers in any float type (a model's scalar inputs, e.g. a ControlNet scale). */
export function scalars(
  type: 'float32' | 'float16' | 'float64',
  values: readonly number[],
  dims: readonly number[],
): Tensor<'float32' | 'float16' | 'float64'> {
  if (type === 'float64') {
    checkSize(values.length, dims)
    return { type, data: Float64Array.from(values), dims }
  }
  return floats(type, Float32Array.from(values), dims)
}

/** Builds an integer tensor of the requested type from plain numbers. */
export function integers(
  type: 'int32' | 'int64',
  values: ArrayLike<number>,
  dims: readonly number[],
): Tensor<'int32' | 'int64'> {
  checkSize(values.length, dims)
  if (type === 'int32') return { type, data: Int32Array.from(values), dims }
  const data = new BigInt64Array(values.length)
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i])
  return { type, data, dims }
}

/** Reads a float32 output, widening float16 if a model returns half precision. */
export function asFloat32(t: Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array
  if (t.type === 'float16') return halfToFloat(t.data as Uint16Array)
  throw new TypeError(`expected a float tensor, got ${t.type}`)
}

function checkSize(n: number, dims: readonly number[]): void {
  const want = dims.reduce((a, b) => a * b, 1)
  if (n !== want)
    throw new RangeError(`tensor of ${n} values cannot have shape [${dims.join(', ')}]`)
}

type Float16ArrayLike = {
  new (values: ArrayLike<number>): ArrayLike<number> & { buffer: ArrayBuffer }
}
/** The runtime's own `Float16Array` (ES2025), when it has one. */
const NativeFloat16 = (globalThis as { Float16Array?: Float16ArrayLike }).Float16Array

/**
 * float32 → IEEE 754 binary16 bits, rounding to nearest, ties to even (as `Float16Array` and
 * ONNX Runtime's `Cast` do): overflow becomes ±Infinity, NaN stays NaN, tiny values become
 * subnormals or ±0.
 */
export function toFloat16Bits(values: Float32Array): Uint16Array {
  if (NativeFloat16) return new Uint16Array(new NativeFloat16(values).buffer)
  return float32ToHalfBits(values)
}

/** binary16 bits → float32, exactly (every binary16 value is a float32). */
export function fromFloat16Bits(bits: Uint16Array): Float32Array {
  return halfToFloat(bits)
}

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** The portable conversion behind `toFloat16Bits`, on the float32 bit pattern. */
export function float32ToHalfBits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i]
    const x = u32[0]
    const sign = (x >>> 16) & 0x8000
    const exp = (x >>> 23) & 0xff
    const mant = x & 0x7fffff
    let h: number
    if (exp === 0xff) {
      // Infinity, or NaN (kept quiet, with the top mantissa bits).
      h = sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0)
    } else {
      const e = exp - 127 + 15
      if (e >= 0x1f)
        h = sign | 0x7c00 // overflow
      else if (e <= 0) {
        // Subnormal or zero: shift the full significand (with its implicit 1) into place.
        if (e < -10) h = sign
        else {
          const m = mant | 0x800000
          const shift = 14 - e
          let v = m >>> shift
          const rem = m & ((1 << shift) - 1)
          const half = 1 << (shift - 1)
          if (rem > half || (rem === half && v & 1)) v++
          h = sign | v
        }
      } else {
        let v = (e << 10) | (mant >>> 13)
        const rem = mant & 0x1fff
        if (rem > 0x1000 || (rem === 0x1000 && v & 1)) v++ // may carry into the exponent: right
        h = sign | v
      }
    }
    out[i] = h
  }
  return out
}

function halfToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]
    const s = h & 0x8000 ? -1 : 1
    const e = (h >> 10) & 0x1f
    const f = h & 0x3ff
    out[i] =
      e === 0
        ? s * 2 ** -14 * (f / 1024)
        : e === 31
          ? f
            ? NaN
            : s * Infinity
          : s * 2 ** (e - 15) * (1 + f / 1024)
  }
  return out
}
