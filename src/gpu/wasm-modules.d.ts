/** A `.wasm` import is a precompiled module in workerd (wrangler's CompiledWasm rule). */
declare module '*.wasm' {
  const module: WebAssembly.Module
  export default module
}
declare module 'onnxruntime-web/ort-wasm-simd-threaded.wasm' {
  const module: WebAssembly.Module
  export default module
}
declare module '*.json' {
  const value: Record<string, unknown>
  export default value
}
