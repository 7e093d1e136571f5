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

const CHROMIUM = '/usr/bin/chromium'
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ORT_DIST = join(ROOT, 'node_modules/onnxruntime-web/dist')
const MODEL = join(GOLDEN, 'pipeline/tiny-sd-optimum')
const CASE = 'euler_a_4_cfg7.5_seed0_32x64'
if (!existsSync(CHROMIUM))
  console.warn(`browser pipeline test skipped: ${CHROMIUM} not found (apt-get install chromium)`)

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
}

describe.skipIf(!existsSync(CHROMIUM))('pipeline in headless Chromium', () => {
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
    const { chromium } = await import('playwright-core')
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    })
    try {
      const page = await browser.newPage()
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(e.message))
      await page.goto(`${base}/`)
      await page.waitForFunction(() => typeof (globalThis as any).runGolden === 'function')
      const got = await page.evaluate(() => (globalThis as any).runGolden('/case.json', 'wasm'))
      expect(errors).toEqual([])
      expect(got.backend).toBe('onnxruntime-web:wasm')
      const ref = goldenJson(`pipeline/cases/${CASE}.json`)
      expect(maxAbsDiff(got.latents, ref.final_latents)).toBeLessThanOrEqual(
        1e-3 * Math.max(1, maxAbs(ref.final_latents)),
      )
      let differ = 0
      ref.image.uint8.forEach((v: number, i: number) => {
        expect(Math.abs(got.image[i] - v)).toBeLessThanOrEqual(1)
        if (got.image[i] !== v) differ++
      })
      expect(differ / ref.image.uint8.length).toBeLessThanOrEqual(0.01)
    } finally {
      await browser.close()
    }
  })
})
