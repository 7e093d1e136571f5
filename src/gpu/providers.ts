/**
 * @module
 * The one place that decides which ONNX Runtime execution providers run where. Every backend
 * asks `resolveProviders`; nothing else names a provider.
 */

/** Runtimes the product runs in. */
export type Runtime = 'workerd' | 'node' | 'browser' | 'deno'

/**
 * Default provider order per runtime, most preferred first; a backend falls back down the list.
 * workerd: plain WebAssembly only (single-threaded; WebGPU builds are too big for an isolate).
 * node: WebGPU (Dawn, bundled in onnxruntime-node), CUDA where its libraries are installed, CPU.
 * On request also `wasm` in node: onnxruntime-web's WebAssembly build, the edge's own kernels, so a
 * backend reproduces the in-edge path's bytes (native CPU kernels round differently, by ±1 in 8-bit).
 */
export const EXECUTION_PROVIDERS: Readonly<Record<Runtime, readonly string[]>> = Object.freeze({
  workerd: Object.freeze(['wasm']),
  node: Object.freeze(['cpu']),
  browser: Object.freeze(['webgpu', 'wasm']),
  deno: Object.freeze(['webgpu', 'wasm']),
})

/** Providers each runtime can use at all. */
const SUPPORTED: Readonly<Record<Runtime, readonly string[]>> = Object.freeze({
  workerd: ['wasm'],
  node: ['webgpu', 'cuda', 'cpu', 'wasm'],
  browser: ['webgpu', 'wasm'],
  deno: ['webgpu', 'wasm'],
})

/**
 * Resolves a configured provider list (e.g. `"webgpu,cpu"` from `TTI_PROVIDERS`) for a runtime,
 * or the default order. Throws on a provider the runtime cannot use.
 */
export function resolveProviders(
  runtime: Runtime,
  requested?: string | readonly string[],
): string[] {
  const list =
    requested === undefined || requested === ''
      ? [...EXECUTION_PROVIDERS[runtime]]
      : (typeof requested === 'string' ? requested.split(',') : [...requested])
          .map((p) => p.trim().toLowerCase())
          .filter(Boolean)
  for (const p of list) {
    if (!SUPPORTED[runtime].includes(p)) {
      throw new Error(
        `execution provider "${p}" is not available in ${runtime}; use one of ${SUPPORTED[runtime].join(', ')}`,
      )
    }
  }
  if (list.length === 0) throw new Error('no execution provider configured')
  return list
}

/**
 * Components that stay on the CPU provider even when a GPU provider is first in line: the text
 * encoder runs once per prompt (and is cached), and exported encoders often gather from a
 * float16 embedding table, which needs WebGPU `shader-f16` (SwiftShader does not offer it).
 */
export const CPU_COMPONENTS: readonly string[] = Object.freeze(['text_encoder'])

/** The provider chain for one model component, given the backend's chain. */
export function providersForComponent(
  chain: readonly string[],
  component: string | undefined,
): string[] {
  if (component && CPU_COMPONENTS.includes(component) && chain.includes('cpu')) return ['cpu']
  if (component && CPU_COMPONENTS.includes(component) && chain.includes('wasm')) return ['wasm']
  return [...chain]
}
