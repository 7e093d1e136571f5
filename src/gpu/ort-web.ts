/**
 * @module
 * onnxruntime-web outside workerd: in browsers and Deno with the WebGPU provider (falling back
 * to WebAssembly), and in Node on WebAssembly (single-threaded, as in workerd) for benchmarks.
 * workerd uses `./ort-wasm` instead, which needs the precompiled-module shim.
 */
import * as ort from 'onnxruntime-web'
import { createOrtBackend, type OrtModule } from './ort-backend'
import { resolveProviders, type Runtime } from './providers'
import type { InferenceBackend } from '../pipeline/tensor'

/** Creates an onnxruntime-web backend for `runtime`, e.g. `createWebBackend('browser')`. */
export function createWebBackend(
  runtime: Exclude<Runtime, 'workerd'>,
  providers?: string | readonly string[],
  options: { wasmPaths?: string } = {},
): InferenceBackend {
  // In Node, onnxruntime-web only serves to measure the in-edge WebAssembly path.
  const executionProviders = runtime === 'node' ? ['wasm'] : resolveProviders(runtime, providers)
  if (!executionProviders.includes('wasm')) executionProviders.push('wasm')
  ort.env.wasm.numThreads = 1
  // Where the page serves onnxruntime-web's .wasm files, when a bundler moved the glue code.
  if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths
  ort.env.logLevel = 'error'
  return createOrtBackend(ort as unknown as OrtModule, {
    name: `onnxruntime-web:${executionProviders.join('>')}`,
    executionProviders,
    serialize: true,
  })
}
