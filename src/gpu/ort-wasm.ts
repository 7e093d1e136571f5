/**
 * @module
 * ONNX Runtime on WebAssembly inside workerd. workerd forbids compiling WebAssembly from bytes,
 * so the `.wasm` arrives as a module import (a precompiled `WebAssembly.Module`) and a small shim
 * hands it to the Emscripten loader when that asks to instantiate its binary.
 * NOTE: the plain (non-JSEP) build keeps the bundle to one 14 MB wasm; threads are off (no workers).
 */
import * as ort from 'onnxruntime-web/wasm'
import ortWasm from 'onnxruntime-web/ort-wasm-simd-threaded.wasm'
import { createOrtBackend, type OrtModule } from './ort-backend'
import { resolveProviders } from './providers'
import type { InferenceBackend } from '../pipeline/tensor'

/** Marker bytes passed as `wasmBinary`; the shim swaps them for the precompiled module. */
const MARKER = new TextEncoder().encode('tti:ort-wasm-module-import')

let installed = false

/** Routes Emscripten's `WebAssembly.instantiate(MARKER, imports)` to the imported module. */
function installInstantiateShim(module: WebAssembly.Module): void {
  if (installed) return
  installed = true
  const original = WebAssembly.instantiate.bind(WebAssembly) as (
    s: unknown,
    i?: WebAssembly.Imports,
  ) => Promise<unknown>
  const isMarker = (src: unknown): boolean => {
    if (!(src instanceof ArrayBuffer || ArrayBuffer.isView(src))) return false
    const bytes =
      src instanceof ArrayBuffer
        ? new Uint8Array(src)
        : new Uint8Array(src.buffer, src.byteOffset, src.byteLength)
    return bytes.length === MARKER.length && bytes.every((b, i) => b === MARKER[i])
  }
  ;(WebAssembly as { instantiate: unknown }).instantiate = (
    src: unknown,
    imports?: WebAssembly.Imports,
  ) =>
    isMarker(src)
      ? original(module, imports).then((instance) => ({ instance, module }))
      : original(src, imports)
}

/** Creates the in-isolate WebAssembly backend. */
export function createWasmBackend(): InferenceBackend {
  installInstantiateShim(ortWasm)
  ort.env.wasm.numThreads = 1
  ort.env.wasm.wasmBinary = MARKER
  ort.env.logLevel = 'error'
  return createOrtBackend(ort as unknown as OrtModule, {
    name: 'onnxruntime-web:wasm',
    executionProviders: resolveProviders('workerd'),
    serialize: true,
  })
}
