/**
 * The pipeline runs unchanged in Deno: `src/pipeline` bundled with esbuild (platform neutral),
 * onnxruntime-web on WebAssembly, model files read through `file://` fetches, reproducing a
 * diffusers reference generation.
 */
import { build } from 'esbuild'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { GOLDEN, goldenJson, maxAbs, maxAbsDiff } from './golden'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CASE = 'ddim_1_cfg7.5_seed0_32x64'

describe('pipeline in Deno', () => {
  it('reproduces a reference generation on WebAssembly', async () => {
    const out = await build({
      entryPoints: [join(ROOT, 'test/browser/deno-entry.ts')],
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      write: false,
      logLevel: 'error',
    })
    const bundle = join(mkdtempSync(join(tmpdir(), 'tti-deno-')), 'bundle.mjs')
    writeFileSync(bundle, out.outputFiles[0].text)
    const deno = join(ROOT, 'node_modules/.bin/deno')
    const { stdout } = await promisify(execFile)(
      deno,
      [
        'run',
        '--allow-read',
        bundle,
        pathToFileURL(join(GOLDEN, 'pipeline/tiny-sd-optimum')).href + '/',
        pathToFileURL(join(ROOT, 'node_modules/onnxruntime-web/dist')).href + '/',
        join(GOLDEN, `pipeline/cases/${CASE}.json`),
      ],
      { maxBuffer: 64 << 20, env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' } },
    )
    const got = JSON.parse(stdout)
    const ref = goldenJson(`pipeline/cases/${CASE}.json`)
    expect(got.backend).toBe('onnxruntime-web:wasm')
    expect(maxAbsDiff(got.latents, ref.final_latents)).toBeLessThanOrEqual(
      1e-3 * Math.max(1, maxAbs(ref.final_latents)),
    )
    let differ = 0
    ref.image.uint8.forEach((v: number, i: number) => {
      expect(Math.abs(got.image[i] - v)).toBeLessThanOrEqual(1)
      if (got.image[i] !== v) differ++
    })
    expect(differ / ref.image.uint8.length).toBeLessThanOrEqual(0.01)
  })
})
