/**
 * The pipeline runs unchanged in a real browser: `src/pipeline` bundled with esbuild, served to
 * headless Chromium (Debian's package, driven by playwright-core), onnxruntime-web on
 * WebAssembly, reproducing a diffusers reference generation.
 */
import { build } from 'esbuild'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GOLDEN, goldenJson, maxAbs, maxAbsDiff } from './golden'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

const CHROMIUM = RUNTIME_PATHS.chromium
const SKIP = skipWithout('browser pipeline test', ['chromium', 'swiftshader', 'vulkanLoader'])
const SWIFTSHADER_ICD = RUNTIME_PATHS.swiftshader
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ORT_DIST = join(ROOT, 'node_modules/onnxruntime-web/dist')
const MODEL = join(GOLDEN, 'pipeline/tiny-sd-optimum')
const CASE = 'euler_a_4_cfg7.5_seed0_32x64'

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
}

describe.skipIf(SKIP)('pipeline in headless Chromium', () => {
  let server: Server
  let base: string
  let bundle: string

  beforeAll(async () => {
    const out = await build({
      entryPoints: [join(ROOT, 'test/browser/pipeline-entry.ts')],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      write: false,
      logLevel: 'error',
    })
    bundle = out.outputFiles[0].text
    const page = `<!doctype html><script type="module" src="/bundle.js"></script>`
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const send = (body: string | Buffer, type: string) => {
        res.writeHead(200, { 'content-type': type })
        res.end(body)
      }
      const file = (root: string, rel: string) => {
        const p = normalize(join(root, rel))
        if (!p.startsWith(root) || !existsSync(p)) return res.writeHead(404).end()
        send(readFileSync(p), TYPES[extname(p)] ?? 'application/octet-stream')
      }
      if (url.pathname === '/') return send(page, 'text/html')
      if (url.pathname === '/bundle.js') return send(bundle, 'text/javascript')
      if (url.pathname === '/case.json') return file(join(GOLDEN, 'pipeline/cases'), `${CASE}.json`)
      if (url.pathname.startsWith('/ort/')) return file(ORT_DIST, url.pathname.slice(5))
      if (url.pathname.startsWith('/model/')) return file(MODEL, url.pathname.slice(7))
      res.writeHead(404).end()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterAll(() => server?.close())

  it('reproduces a reference generation on WebAssembly', async () => {
    const got = await runInChromium(base, 'wasm', [])
    expect(got.backend).toBe('onnxruntime-web:wasm')
    expect(got.webgpuAdapter).toBe(false)
    expectGolden(got, 1)
  })

  // The browser's WebGPU provider over SwiftShader (Debian's chromium ships its Vulkan driver).
  it('reproduces a reference generation on WebGPU (SwiftShader)', async () => {
    const got = await runInChromium(base, 'webgpu', [
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
    ])
    expect(got.backend).toBe('onnxruntime-web:webgpu>wasm')
    expect(got.webgpuAdapter).toBe(true)
    expectGolden(got, 1)
  }, 300_000)
})

interface PageResult {
  latents: number[]
  image: number[]
  backend: string
  webgpuAdapter: boolean
}

/** Runs the golden case in a fresh headless Chromium on `providers`. */
async function runInChromium(base: string, providers: string, args: string[]): Promise<PageResult> {
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    env: { ...process.env, VK_ICD_FILENAMES: SWIFTSHADER_ICD },
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...(args.length ? args : ['--disable-gpu']),
    ],
  })
  try {
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`${base}/`)
    await page.waitForFunction(() => typeof (globalThis as any).runGolden === 'function')
    const got: PageResult = await page.evaluate(
      (p) => (globalThis as any).runGolden('/case.json', p),
      providers,
    )
    expect(errors).toEqual([])
    return got
  } finally {
    await browser.close()
  }
}

/** Latents within 1e-3 of the reference scale, pixels within `pixelTolerance`, < 1% differing. */
function expectGolden(got: PageResult, pixelTolerance: number): void {
  const ref = goldenJson(`pipeline/cases/${CASE}.json`)
  expect(maxAbsDiff(got.latents, ref.final_latents)).toBeLessThanOrEqual(
    1e-3 * Math.max(1, maxAbs(ref.final_latents)),
  )
  let differ = 0
  ref.image.uint8.forEach((v: number, i: number) => {
    expect(Math.abs(got.image[i] - v)).toBeLessThanOrEqual(pixelTolerance)
    if (got.image[i] !== v) differ++
  })
  expect(differ / ref.image.uint8.length).toBeLessThanOrEqual(0.01)
}
