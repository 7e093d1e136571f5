/** A `.wasm` import is a precompiled module in workerd (wrangler's CompiledWasm rule). */
declare module '*.wasm' {
  const module: WebAssembly.Module
  export default module
}
/** An `.onnx` import is the file's bytes (wrangler's Data rule). */
declare module '*.onnx' {
  const bytes: ArrayBuffer
  export default bytes
}
/** A `.txt` import is the file's text (wrangler's Text rule). */
declare module '*.txt' {
  const text: string
  export default text
}
declare module 'onnxruntime-web/ort-wasm-simd-threaded.wasm' {
  const module: WebAssembly.Module
  export default module
}
declare module '*.json' {
  const value: Record<string, unknown>
  export default value
}
