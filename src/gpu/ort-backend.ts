/**
 * @module
 * Adapts an ONNX Runtime module (onnxruntime-node or onnxruntime-web; they share the
 * onnxruntime-common API) to the runtime-neutral `InferenceBackend` of `./tensor`.
 */
import type { InferenceSession as OrtSession, Tensor as OrtTensor } from 'onnxruntime-common'
import { providersForComponent } from './providers'
import type {
  InferenceBackend,
  ModelSession,
  Tensor,
  TensorType,
  ValueInfo,
} from '../pipeline/tensor'

/** The part of an ONNX Runtime module this adapter uses. */
export interface OrtModule {
  InferenceSession: {
    create(model: Uint8Array, options?: OrtSession.SessionOptions): Promise<OrtSession>
  }
  Tensor: new (type: TensorType, data: Tensor['data'], dims: readonly number[]) => OrtTensor
}

/** Options for `createOrtBackend`. */
export interface OrtBackendOptions {
  /** Name reported by the backend, e.g. `onnxruntime-web:wasm`. */
  name: string
  /** Execution providers in order of preference, as resolved by `resolveProviders`. */
  executionProviders: readonly string[]
  /** Run one model call at a time (WebAssembly ORT is not re-entrant). */
  serialize: boolean
  /** Extra session options (graph optimisation level, threads…). */
  sessionOptions?: OrtSession.SessionOptions
}

/** Wraps an ONNX Runtime module as an `InferenceBackend`. */
export function createOrtBackend(ort: OrtModule, options: OrtBackendOptions): InferenceBackend {
  let queue: Promise<unknown> = Promise.resolve()
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    if (!options.serialize) return fn()
    const next = queue.then(fn, fn)
    queue = next.catch(() => undefined)
    return next
  }
  return {
    name: options.name,
    async createSession(model, { externalData, label } = {}) {
      const session = await exclusive(() =>
        ort.InferenceSession.create(model, {
          executionProviders: providersForComponent(options.executionProviders, label),
          graphOptimizationLevel: 'all',
          ...options.sessionOptions,
          ...(externalData ? { externalData } : {}),
        }),
      )
      return wrapSession(ort, session, exclusive)
    },
  }
}

function wrapSession(
  ort: OrtModule,
  session: OrtSession,
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>,
): ModelSession {
  const info = (m: readonly OrtSession.ValueMetadata[]): ValueInfo[] =>
    m.map((v) =>
      v.isTensor
        ? { name: v.name, type: v.type, shape: v.shape }
        : { name: v.name, type: 'non-tensor', shape: [] },
    )
  return {
    inputs: info(session.inputMetadata),
    outputs: info(session.outputMetadata),
    async run(feeds, outputNames) {
      const ortFeeds: Record<string, OrtTensor> = {}
      for (const [k, t] of Object.entries(feeds))
        ortFeeds[k] = new ort.Tensor(t.type, t.data, t.dims)
      const out = await exclusive(() =>
        outputNames ? session.run(ortFeeds, [...outputNames]) : session.run(ortFeeds),
      )
      const result: Record<string, Tensor> = {}
      for (const [k, t] of Object.entries(out)) {
        result[k] = { type: t.type as TensorType, data: t.data as Tensor['data'], dims: t.dims }
      }
      return result
    },
    release: () => session.release(),
  }
}
