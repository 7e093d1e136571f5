/**
 * @module
 * Compiled WebAssembly modules of the image codecs, in both runtimes we serve from. workerd may
 * not compile bytes, so there a `.wasm` import is the module itself (wrangler's CompiledWasm
 * rule); Node compiles the package's file once. Each module is compiled once per isolate and only
 * when first used, so a request that needs no codec never loads one.
 *
 * @example
 * const module = await codecWasm(
 *   () => import('@jsquash/webp/codec/enc/webp_enc_simd.wasm'),
 *   '@jsquash/webp/codec/enc/webp_enc_simd.wasm',
 * )
 */

const compiled = new Map<string, Promise<WebAssembly.Module>>()

/**
 * The compiled module of a package's `.wasm` file. `workerdImport` must be a
 * dynamic import of the literal `specifier`, so the bundler sees it; Node resolves `specifier`.
 */
export function codecWasm(
  workerdImport: () => Promise<{ default: WebAssembly.Module }>,
  specifier: string,
): Promise<WebAssembly.Module> {
  let module = compiled.get(specifier)
  if (module) return module
  module = (async () => {
    const { navigator } = globalThis as { navigator?: { userAgent?: string } }
    if (navigator?.userAgent === 'Cloudflare-Workers') return (await workerdImport()).default
    const { createRequire } = await import('node:module')
    const { readFile } = await import('node:fs/promises')
    const path = createRequire(import.meta.url).resolve(specifier)
    // workers-types leave out what workerd forbids: compiling bytes.
    const { compile } = WebAssembly as unknown as {
      compile(bytes: Uint8Array): Promise<WebAssembly.Module>
    }
    return compile(await readFile(path))
  })()
  compiled.set(specifier, module)
  module.catch(() => compiled.delete(specifier))
  return module
}
