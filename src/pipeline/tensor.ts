/**
 * @module
 * Runtime-neutral tensors and sessions. `src/pipeline` speaks only these types; the modules in
 * `src/gpu` translate them to and from ONNX Runtime, so no pipeline code imports onnxruntime.
 */

/** Element types the pipeline exchanges with models. */
export type TensorType = 'float32' | 'float16' | 'int32' | 'int64'

/** Typed-array storage for each `TensorType` (float16 travels as raw bits). */
export interface TensorStorage {
  float32: Float32Array
  float16: Uint16Array
  int32: Int32Array
  int64: BigInt64Array
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

/** Creates sessions on one execution provider chain (CPU, WebAssembly, WebGPU, CUDA …). */
export interface InferenceBackend {
  /** Human-readable name, e.g. `onnxruntime-node:cpu`. */
  readonly name: string
  /** Loads an ONNX model from its bytes. External weight files, if any, come in `externalData`. */
  createSession(
    model: Uint8Array,
    options?: { label?: string; externalData?: { path: string; data: Uint8Array }[] },
  ): Promise<ModelSession>
}

/** Builds a float32 tensor. */
export function float32(data: Float32Array, dims: readonly number[]): Tensor<'float32'> {
  checkSize(data.length, dims)
  return { type: 'float32', data, dims }
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
