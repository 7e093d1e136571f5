/**
 * `npm run generate` (scripts/generate.ts) as a child process: text-to-image and the
 * conditioners' flags on the golden models, checked against diffusers' reference pixels, and
 * exit code 2 with a plain message for bad input.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { decodePicture } from '../../src/images/pictures'
import { GOLDEN, goldenJson } from './golden'
import { imageDiff } from '../browser/golden-compare'

const dir = mkdtempSync(join(tmpdir(), 'tti-generate-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const input = (name: string) => join(GOLDEN, 'pipeline', 'inputs', name)
const model = (name: string) => join(GOLDEN, 'pipeline', name)

function generate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join('node_modules', '.bin', 'tsx'),
      ['scripts/generate.ts', ...args],
      { timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout, stderr }),
    )
  })
}

/** The common flags of a golden case (its scheduler is the model's default, PNDM). */
function flags(ref: any, out: string): string[] {
  const i = ref.inputs
  return [
    '--model',
    model(ref.model),
    '--prompt',
    i.prompt,
    ...(i.negative_prompt ? ['--negative-prompt', i.negative_prompt] : []),
    '--seed',
    String(i.seed),
    '--steps',
    String(i.num_inference_steps),
    '--guidance',
    String(i.guidance_scale),
    '--output',
    out,
  ]
}

async function expectReference(file: string, ref: any) {
  const { rgb } = await decodePicture('image', new Uint8Array(readFileSync(file)))
  const want: number[] = ref.image.uint8
  const { worst, share } = imageDiff(rgb, want)
  expect(worst).toBeLessThanOrEqual(1)
  expect(share).toBeLessThanOrEqual(0.01)
}

describe('npm run generate with pictures', () => {
  it('--image --strength (image-to-image) reproduces diffusers', async () => {
    const ref = goldenJson('pipeline/cases-img2img/pndm_20_s0.75_cfg7.5_seed0_64x64.json')
    const out = join(dir, 'img2img.png')
    const r = await generate([
      ...flags(ref, out),
      '--image',
      input('gradient_disc_64x64.png'),
      '--strength',
      '0.75',
    ])
    expect(r.code, r.stderr).toBe(0)
    await expectReference(out, ref)
  })

  it('--mask (inpainting, 9-channel UNet) reproduces diffusers', async () => {
    const ref = goldenJson('pipeline/cases-inpaint/unet9_pndm_20_s1.0_cfg7.5_rect_seed0_64x64.json')
    const out = join(dir, 'inpaint.png')
    const r = await generate([
      ...flags(ref, out),
      '--image',
      input('gradient_disc_64x64.png'),
      '--mask',
      input('mask_rect_64x64.png'),
      '--strength',
      '1',
    ])
    expect(r.code, r.stderr).toBe(0)
    await expectReference(out, ref)
  })

  it('--control-image --control-scale (ControlNet) reproduces diffusers', async () => {
    const ref = goldenJson(
      'pipeline/cases-controlnet/pndm_20_cfg7.5_scale0.5_silhouette_seed0_64x64.json',
    )
    const out = join(dir, 'control.png')
    const r = await generate([
      ...flags(ref, out),
      '--control-image',
      input('silhouette_64x64.png'),
      '--control-scale',
      '0.5',
      '--control-start',
      '0',
      '--control-end',
      '1',
    ])
    expect(r.code, r.stderr).toBe(0)
    await expectReference(out, ref)
  })

  it('exits 2 with a plain message for a bad picture or a flag without its picture', async () => {
    const text = join(dir, 'not-a-picture.png')
    writeFileSync(text, 'hello')
    const base = [
      '--model',
      model('tiny-sd-img2img'),
      '--prompt',
      'x',
      '--output',
      join(dir, 'x.png'),
    ]
    for (const [args, message] of [
      [['--image', text], /--image .*not a PNG or JPEG/],
      [['--image', join(dir, 'missing.png')], /--image: cannot read/],
      [['--mask', input('mask_rect_64x64.png')], /--mask needs --image/],
      [['--control-scale', '1'], /--control-scale needs --control-image/],
      [
        ['--image', input('gradient_disc_64x64.png'), '--mask', input('mask_rect_32x64.png')],
        /mask: is 64x32 but the output is 64x64/,
      ],
      [
        ['--control-image', input('silhouette_64x64.png')],
        /control image: the model has no controlnet/,
      ],
    ] as const) {
      const r = await generate([...base, ...args])
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(message)
      expect(r.stderr).not.toMatch(/\n\s+at /) // a message, not a stack
    }
  })
})

describe('npm run generate --format', () => {
  it('writes WebP or JPEG encoded from the same PNG, and refuses a bad format or quality', async () => {
    const base = ['--model', 'models/tiny-shapes', '--prompt', 'a red circle', '--seed', '5']
    const run = async (out: string, extra: string[] = []) => {
      const r = await generate([...base, '--steps', '2', '--output', join(dir, out), ...extra])
      expect(r.code, r.stderr).toBe(0)
      return new Uint8Array(readFileSync(join(dir, out)))
    }
    const png = await decodePicture('image', await run('five.png'))
    const jpeg = await run('five.jpg', ['--format', 'jpeg', '--quality', '90'])
    expect([jpeg[0], jpeg[1]]).toEqual([0xff, 0xd8])
    const decoded = await decodePicture('image', jpeg)
    expect([decoded.width, decoded.height]).toEqual([png.width, png.height])
    let sum = 0
    for (let i = 0; i < png.rgb.length; i++) sum += Math.abs(png.rgb[i] - decoded.rgb[i])
    // Quality 90 on the 64×64 render: measured mean 1.3 levels.
    expect(sum / png.rgb.length).toBeLessThan(3)
    const webp = await run('five.webp', ['--format', 'webp'])
    expect(String.fromCharCode(...webp.subarray(8, 12))).toBe('WEBP')

    for (const [args, message] of [
      [['--format', 'gif'], /--format must be one of png, webp, jpeg/],
      [['--format', 'webp', '--quality', '101'], /--quality must be between 0 and 100/],
      [['--quality', '50'], /--quality applies to webp and jpeg only/],
    ] as const) {
      const r = await generate([...base, '--output', join(dir, 'x.png'), ...args])
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(message)
    }
  })
})

describe('npm run generate: long prompts and several images', () => {
  const bundled = join('models', 'tiny-shapes')
  const long = Array(8).fill('a red circle').join(' and ') // over the 18-token window

  it('refuses a prompt over the window with its own flag as advice; --truncate cuts it', async () => {
    const out = join(dir, 'long.png')
    const base = ['--model', bundled, '--prompt', long, '--seed', '1', '--steps', '1']
    const refused = await generate([...base, '--output', out])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/prompt has \d+ tokens, the text encoder takes at most 18/)
    expect(refused.stderr).toContain('(pass --truncate to cut it)')
    expect(refused.stderr).not.toContain('"truncate"')
    const cut = await generate([...base, '--output', out, '--truncate'])
    expect(cut.code, cut.stderr).toBe(0)
    expect((await decodePicture('image', new Uint8Array(readFileSync(out)))).width).toBe(64)
  })

  it('--n 2 writes FILE-1.png and FILE-2.png, as tti generate -n does', async () => {
    const out = join(dir, 'pair.png')
    const r = await generate([
      ...['--model', bundled, '--prompt', 'a red circle', '--seed', '5', '--steps', '1'],
      ...['--n', '2', '--output', out],
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(join(dir, 'pair-1.png'))
    expect(r.stdout).toContain(join(dir, 'pair-2.png'))
    for (const f of ['pair-1.png', 'pair-2.png'])
      expect((await decodePicture('image', new Uint8Array(readFileSync(join(dir, f))))).width).toBe(
        64,
      )
  })
})
