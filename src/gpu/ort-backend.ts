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
    create(model: Uint8Array | string, options?: OrtSession.SessionOptions): Promise<OrtSession>
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
  /** Whether the runtime loads `{ path }` models itself (onnxruntime-node). */
  readsFiles?: boolean
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
    readsFiles: options.readsFiles ?? false,
    async createSession(model, { label } = {}) {
      if ('path' in model && !options.readsFiles)
        throw new Error(`${options.name} cannot load a model from a file path`)
      const externalData = 'bytes' in model ? model.externalData : undefined
      // From a path, ONNX Runtime reads the file and its external data itself (relative to it).
      const create = (executionProviders: string[]) =>
        exclusive(() =>
          ort.InferenceSession.create('path' in model ? model.path : model.bytes, {
            executionProviders,
            graphOptimizationLevel: 'all',
            ...options.sessionOptions,
            ...(externalData?.length ? { externalData } : {}),
          }),
        )
      let chain = providersForComponent(options.executionProviders, label)
      let session: OrtSession
      for (;;) {
        try {
          session = await create(chain)
          break
        } catch (e) {
          // ONNX Runtime does not fall back when a provider cannot start (no WebGPU adapter, no
          // CUDA libraries): go down the configured chain, as it promises, and say so once.
          if (chain.length < 2) throw e
          console.warn(
            `${options.name}: ${label ?? 'session'} cannot use ${chain[0]} (${(e as Error).message.split('\n')[0]}); falling back to ${chain.slice(1).join(', ')}`,
          )
          chain = chain.slice(1)
        }
      }
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
