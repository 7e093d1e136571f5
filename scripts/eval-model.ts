/**
 * Evaluates the bundled model through the product's own pipeline (onnxruntime-node, CPU) on
 * prompts built from the held-out (colour, shape, background) combinations, and judges each
 * image with the pixel rules of `world.json`:
 * - colour: the most common nearest palette colour among non-background pixels
 *   (farther than the threshold from the background RGB);
 * - shape: pixel count / bounding-box area of that colour, nearest of the shapes' fill ratios
 *   (circle π/4, square 1, triangle 1/2);
 * - position: the named position whose centre is nearest the centroid.
 *
 *   npm run eval:model -- [--model DIR] [--per-combo 6] [--sheet contact-sheet.png]
 *
 * `--combos train` builds the prompts from the training combos instead (a control: the gap between
 * the two is what the model fails to compose, the rest is drawing precision).
 * Prints accuracy per attribute at each guidance scale (default 7.5 and 1.0; `--guidance 7.5,3,1`,
 * `--guidance-rescale 0.7`) and writes a contact sheet of the first scale's images; `--dump out.json`
 * writes each case with its judgement (including the measured fill ratio) per guidance scale.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createNodeBackend } from '../src/gpu/ort-node'
import { folderSource } from '../src/node/folder-source'
import type { RgbImage } from '../src/pipeline/image'
import { loadModel } from '../src/pipeline/model'
import { encodePng } from '../src/pipeline/png'
import { StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'

interface World {
  image_size: number
  colors: Record<string, [number, number, number]>
  backgrounds: Record<string, [number, number, number]>
  shapes: string[]
  shape_fill_ratio: Record<string, number>
  sizes: Record<string, { px: number[]; words: string[] }>
  positions: Record<string, [number, number]>
  judge: { background_distance_threshold: number }
}

interface Case {
  prompt: string
  color: string
  shape: string
  background: string
  position: string
  seed: number
}

type Combo = { color: string; shape: string; background: string }

/** The (colour, shape, background) combos the model was trained on: all but the held-out ones. */
function trainingCombos(world: World, heldout: Combo[]): Combo[] {
  const held = new Set(heldout.map((h) => `${h.color}/${h.shape}/${h.background}`))
  return Object.keys(world.colors).flatMap((color) =>
    world.shapes.flatMap((shape) =>
      Object.keys(world.backgrounds)
        .filter((bg) => bg !== color && !held.has(`${color}/${shape}/${bg}`))
        .map((background) => ({ color, shape, background })),
    ),
  )
}

/** Deterministic prompts: for each combo, `perCombo` (size, position) pairs. */
function buildCases(world: World, combos: Combo[], perCombo: number): Case[] {
  const sizes = Object.keys(world.sizes)
  const positions = Object.keys(world.positions)
  const pairs = sizes.flatMap((s) => positions.map((p) => [s, p] as const))
  const cases: Case[] = []
  combos.forEach((h, hi) => {
    for (let k = 0; k < perCombo; k++) {
      const [size, position] = pairs[(hi * 7 + k * 5) % pairs.length]
      const where = position === 'centre' ? 'in the centre' : `in the ${position}`
      cases.push({
        prompt: `a ${size} ${h.color} ${h.shape} ${where} on a ${h.background} background`,
        ...h,
        position,
        seed: cases.length,
      })
    }
  })
  return cases
}

/** Judges one image: colour, shape and position by the pixel rules, or null if nothing is drawn. */
function judge(world: World, img: RgbImage, background: string) {
  const bg = world.backgrounds[background]
  const names = Object.keys(world.colors)
  const palette = names.map((n) => world.colors[n])
  const thr = world.judge.background_distance_threshold
  const nearest = new Int16Array(img.width * img.height).fill(-1)
  const counts = new Array(names.length).fill(0)
  let fg = 0
  for (let i = 0; i < img.width * img.height; i++) {
    const [r, g, b] = [img.data[3 * i], img.data[3 * i + 1], img.data[3 * i + 2]]
    if (Math.hypot(r - bg[0], g - bg[1], b - bg[2]) <= thr) continue
    fg++
    let best = 0
    let bestD = Infinity
    palette.forEach(([pr, pg, pb], c) => {
      const d = (r - pr) ** 2 + (g - pg) ** 2 + (b - pb) ** 2
      if (d < bestD) [best, bestD] = [c, d]
    })
    nearest[i] = best
    counts[best]++
  }
  if (fg < 20) return null
  const ci = counts.indexOf(Math.max(...counts))
  let [x0, y0, x1, y1, n, sx, sy] = [Infinity, Infinity, -1, -1, 0, 0, 0]
  for (let i = 0; i < nearest.length; i++) {
    if (nearest[i] !== ci) continue
    const x = i % img.width
    const y = Math.floor(i / img.width)
    ;[x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)]
    n++
    sx += x + 0.5
    sy += y + 0.5
  }
  const fill = n / ((x1 - x0 + 1) * (y1 - y0 + 1))
  const shape = Object.entries(world.shape_fill_ratio).reduce((a, b) =>
    Math.abs(b[1] - fill) < Math.abs(a[1] - fill) ? b : a,
  )[0]
  const [cx, cy] = [sx / n, sy / n]
  const position = Object.entries(world.positions).reduce((a, b) =>
    (b[1][0] - cx) ** 2 + (b[1][1] - cy) ** 2 < (a[1][0] - cx) ** 2 + (a[1][1] - cy) ** 2 ? b : a,
  )[0]
  return { color: names[ci], shape, position, fill }
}

/** Tiles images into one RGB grid with 2-pixel gutters. */
function contactSheet(images: RgbImage[], cols: number): RgbImage {
  const s = images[0].width
  const g = 2
  const rows = Math.ceil(images.length / cols)
  const width = cols * (s + g) + g
  const height = rows * (s + g) + g
  const data = new Uint8Array(width * height * 3).fill(96)
  images.forEach((img, k) => {
    const ox = g + (k % cols) * (s + g)
    const oy = g + Math.floor(k / cols) * (s + g)
    for (let y = 0; y < s; y++)
      data.set(img.data.subarray(y * s * 3, (y + 1) * s * 3), ((oy + y) * width + ox) * 3)
  })
  return { width, height, data }
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'models/tiny-shapes' },
      'per-combo': { type: 'string', default: '6' },
      combos: { type: 'string', default: 'heldout' },
      sheet: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string', default: '7.5,1' },
      'guidance-rescale': { type: 'string', default: '0' },
      dump: { type: 'string' },
    },
  })
  const dir = values.model
  const world: World = JSON.parse(readFileSync(join(dir, 'world.json'), 'utf8'))
  const heldout: Combo[] = JSON.parse(readFileSync(join(dir, 'heldout.json'), 'utf8'))
  const combos = values.combos === 'train' ? trainingCombos(world, heldout) : heldout
  const cases = buildCases(world, combos, Number(values['per-combo']))
  const t0 = performance.now()
  const pipe = new StableDiffusionPipeline(
    await loadModel(folderSource(dir), createNodeBackend('cpu')),
  )
  const steps = values.steps ? Number(values.steps) : pipe.spec.defaults.steps
  console.log(
    `${cases.length} ${values.combos} prompts (${combos.length} combos), ${pipe.spec.defaults.scheduler}, ${steps} steps, model load ${(performance.now() - t0).toFixed(0)} ms`,
  )
  console.log('\n| guidance | colour | shape | position | all three | ms/image |')
  console.log('|---:|---:|---:|---:|---:|---:|')
  const guidanceRescale = Number(values['guidance-rescale'])
  const scales = values.guidance.split(',').map(Number)
  const dump: Record<string, unknown[]> = {}
  for (const guidanceScale of scales) {
    const hits = { color: 0, shape: 0, position: 0, all: 0 }
    const images: RgbImage[] = []
    const start = performance.now()
    for (const c of cases) {
      const {
        images: [img],
      } = await pipe.generate({
        prompt: c.prompt,
        seed: c.seed,
        guidanceScale,
        guidanceRescale,
        steps,
      })
      images.push(img)
      const j = judge(world, img, c.background)
      ;(dump[String(guidanceScale)] ??= []).push({ ...c, judged: j })
      const ok = {
        color: j?.color === c.color,
        shape: j?.shape === c.shape,
        position: j?.position === c.position,
      }
      hits.color += +ok.color
      hits.shape += +ok.shape
      hits.position += +ok.position
      hits.all += +(ok.color && ok.shape && ok.position)
    }
    const ms = (performance.now() - start) / cases.length
    const pct = (k: number) => `${((100 * k) / cases.length).toFixed(1)}%`
    console.log(
      `| ${guidanceScale} | ${pct(hits.color)} | ${pct(hits.shape)} | ${pct(hits.position)} | ${pct(hits.all)} | ${ms.toFixed(0)} |`,
    )
    if (guidanceScale === scales[0] && values.sheet) {
      writeFileSync(values.sheet, encodePng(contactSheet(images.slice(0, 48), 8)))
      const list = cases.slice(0, 48).map((c, i) => `${i + 1}. ${c.prompt} (seed ${c.seed})`)
      writeFileSync(values.sheet.replace(/\.png$/, '.txt'), list.join('\n') + '\n')
    }
  }
  if (values.dump) writeFileSync(values.dump, JSON.stringify(dump, null, 1))
}

main().catch((e) => {
  console.error(`error: ${(e as Error).message}`)
  process.exit(2)
})
