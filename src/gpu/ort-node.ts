/**
 * @module
 * ONNX Runtime for Node (the GPU backend service, the CLI, tests and benchmarks). Providers come
 * from `resolveProviders('node', …)`: `webgpu` (Dawn; on CPU-only hosts it runs over SwiftShader),
 * `cuda` where its libraries are installed, else `cpu`; or `wasm` alone, which is onnxruntime-web's
 * WebAssembly build in this process (the edge's kernels, for byte-identical results).
 */
import * as ort from 'onnxruntime-node'
import type { InferenceSession } from 'onnxruntime-common'
import { createOrtBackend, type OrtModule } from './ort-backend'
import { threadOrtModule } from './ort-thread'
import { createWebBackend } from './ort-web'
import { resolveProviders } from './providers'
import type { InferenceBackend } from '../pipeline/tensor'

/** Options of `createNodeBackend`. */
export interface NodeBackendOptions {
  /**
   * Create and run sessions on a worker thread (`./ort-thread`), keeping this thread free for
   * requests: what a server wants. The CLI and tests run them in place.
   */
  thread?: boolean
  /**
   * Extra ONNX Runtime session options, merged over the defaults: e.g. `enableProfiling` and
   * `profileFilePrefix`, whose per-node trace names the provider each node ran on.
   */
  sessionOptions?: InferenceSession.SessionOptions
}

/** Creates an onnxruntime-node backend, e.g. `createNodeBackend('webgpu,cpu')`. */
export function createNodeBackend(
  providers?: string | readonly string[],
  options: NodeBackendOptions = {},
): InferenceBackend {
  // The CPU provider is always the last resort, and it hosts the CPU_COMPONENTS.
  const executionProviders = resolveProviders('node', providers)
  if (executionProviders.includes('wasm')) {
    // A different runtime, not an onnxruntime-node provider: it cannot fall back within a session.
    if (executionProviders.length > 1)
      throw new Error('the wasm provider runs on onnxruntime-web; configure it alone')
    return createWebBackend('node')
  }
  if (!executionProviders.includes('cpu')) executionProviders.push('cpu')
  const runtime = options.thread ? threadOrtModule() : (ort as unknown as OrtModule)
  return createOrtBackend(runtime, {
    name: `onnxruntime-node:${executionProviders.join('>')}${options.thread ? ' (worker thread)' : ''}`,
    executionProviders,
    // Native sessions are thread-safe; the webgpu provider is not re-entrant across runs.
    serialize: executionProviders[0] === 'webgpu',
    sessionOptions: { logSeverityLevel: 3, ...options.sessionOptions },
    readsFiles: true,
  })
}
