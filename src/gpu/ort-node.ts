/**
 * @module
 * ONNX Runtime for Node (the GPU backend service, the CLI, tests and benchmarks). Providers come
 * from `resolveProviders('node', …)`: `webgpu` (Dawn; on CPU-only hosts it runs over SwiftShader),
 * `cuda` where its libraries are installed, else `cpu`.
 */
import * as ort from 'onnxruntime-node'
import { createOrtBackend, type OrtModule } from './ort-backend'
import { resolveProviders } from './providers'
import type { InferenceBackend } from './tensor'

/** Creates an onnxruntime-node backend, e.g. `createNodeBackend('webgpu,cpu')`. */
export function createNodeBackend(providers?: string | readonly string[]): InferenceBackend {
  // The CPU provider is always the last resort, and it hosts the CPU_COMPONENTS.
  const executionProviders = resolveProviders('node', providers)
  if (!executionProviders.includes('cpu')) executionProviders.push('cpu')
  return createOrtBackend(ort as unknown as OrtModule, {
    name: `onnxruntime-node:${executionProviders.join('>')}`,
    executionProviders,
    // Native sessions are thread-safe; the webgpu provider is not re-entrant across runs.
    serialize: executionProviders[0] === 'webgpu',
    sessionOptions: { logSeverityLevel: 3 },
  })
}
