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
 *                          [--combos heldout|train|all] [--prompts full|bg|short]
 *   npm run eval:model -- --conditioners 48 [--conditioner-sheets models/tiny-shapes/contact-sheet]
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
import type { GrayImage, RgbImage } from '../src/pipeline/image'
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

/**
 * Deterministic prompts: for each combo, `perCombo` (size, position) pairs.
 * - `full`: "a {size} {colour} {shape} in the {position} on a {background} background";
 * - `bg`: "a {colour} {shape} on a {background} background" (the playground's kind of prompt; no
 *   position means the centre);
 * - `short`: "a {colour} {shape}" (one case per (colour, shape) pair and seed; the background is
 *   whatever the model draws, read off the image's border).
 */
function buildCases(world: World, combos: Combo[], perCombo: number, form = 'full'): Case[] {
  const sizes = Object.keys(world.sizes)
  const positions = Object.keys(world.positions)
  const pairs = sizes.flatMap((s) => positions.map((p) => [s, p] as const))
  const cases: Case[] = []
  const seen = new Set<string>()
  combos.forEach((h, hi) => {
    if (form === 'short') {
      if (seen.has(`${h.color}/${h.shape}`)) return
      seen.add(`${h.color}/${h.shape}`)
    }
    for (let k = 0; k < perCombo; k++) {
      const [size, position] = pairs[(hi * 7 + k * 5) % pairs.length]
      const where = position === 'centre' ? 'in the centre' : `in the ${position}`
      const prompt =
        form === 'short'
          ? `a ${h.color} ${h.shape}`
          : form === 'bg'
            ? `a ${h.color} ${h.shape} on a ${h.background} background`
            : `a ${size} ${h.color} ${h.shape} ${where} on a ${h.background} background`
      cases.push({
        prompt,
        ...h,
        background: form === 'short' ? '' : h.background,
        position: form === 'full' ? position : 'centre',
        seed: cases.length,
      })
    }
  })
  return cases
}

/** The palette background nearest to the median colour of the image's border pixels. */
function borderBackground(world: World, img: RgbImage): string {
  const px: number[][] = [[], [], []]
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < img.width; x++) {
      if (y > 1 && y < img.height - 2 && x > 1 && x < img.width - 2) continue
      for (let c = 0; c < 3; c++) px[c].push(img.data[3 * (y * img.width + x) + c])
    }
  const med = px.map((v) => v.sort((a, b) => a - b)[v.length >> 1])
  return Object.entries(world.backgrounds).reduce((a, b) =>
    Math.hypot(...b[1].map((v, c) => v - med[c])) < Math.hypot(...a[1].map((v, c) => v - med[c]))
      ? b
      : a,
  )[0]
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

/** A seeded PRNG (mulberry32): the conditioner cases are the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Flat-colour render as training/train.py's `render_rgb` draws it: circle and square centred on
 * (cx, cy), the triangle (apex up, base = height = px) with its centroid there, clamped inside.
 */
function render(
  size: number,
  fg: number[],
  shape: string,
  bg: number[],
  px: number,
  cx: number,
  cy: number,
): { img: RgbImage; mask: Uint8Array } {
  const data = new Uint8Array(size * size * 3)
  const mask = new Uint8Array(size * size)
  const top = Math.min(Math.max(cy - (2 * px) / 3, 0), size - px)
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const [fx, fy] = [x + 0.5, y + 0.5]
      let m: boolean
      if (shape === 'circle') m = (fx - cx) ** 2 + (fy - cy) ** 2 <= (px / 2) ** 2
      else if (shape === 'square') m = Math.abs(fx - cx) <= px / 2 && Math.abs(fy - cy) <= px / 2
      else {
        const v = (fy - top) / px
        m = v >= 0 && v <= 1 && Math.abs(fx - cx) <= (v * px) / 2
      }
      const i = y * size + x
      mask[i] = m ? 255 : 0
      data.set(m ? fg : bg, 3 * i)
    }
  return { img: { width: size, height: size, data }, mask }
}

/** Share of true values, as a percentage string. */
const share = (xs: boolean[]) =>
  `${((100 * xs.filter(Boolean).length) / Math.max(1, xs.length)).toFixed(1)}%`

/**
 * Image-to-image, inpainting and ControlNet through the product pipeline, at the model's default
 * steps and guidance, on cases from a seeded PRNG over all (colour, shape, background) combos:
 * - image-to-image: a world render as the init image, a prompt naming another colour and shape
 *   (no position); at strength 0.3 the input's shape and position should survive, at 0.9 the
 *   prompt's colour should win;
 * - inpainting: the mask is the shape's box (3 px margin, out to the 8-pixel latent grid); the
 *   prompt names another colour (same shape, size and position); outside the mask the pixels
 *   should stay within ±8 of the input, inside the prompt's colour should be drawn;
 * - ControlNet: silhouettes (the shape white on black) at random sizes 14-34 px and centres, which
 *   the training (random renders from another generator) never drew; the generated foreground
 *   (pixels farther than the judge's threshold from the prompt's background) against the
 *   silhouette: IoU, share with IoU ≥ 0.85, and the colour judge.
 */
async function evalConditioners(
  pipe: StableDiffusionPipeline,
  world: World,
  combos: Combo[],
  n: number,
  sheetPrefix?: string,
) {
  const S = world.image_size
  const rnd = prng(1234)
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]
  const colours = Object.keys(world.colors)
  const positions = Object.keys(world.positions)
  const sizes = Object.keys(world.sizes)
  const thr = world.judge.background_distance_threshold
  const sheets: Record<string, RgbImage[]> = { img2img: [], inpaint: [], controlnet: [] }
  console.log(`\nconditioners: ${n} cases each, ${pipe.spec.defaults.steps} steps, model defaults`)

  // image-to-image
  const i2i = Array.from({ length: n }, (_, k) => {
    const c = pick(combos)
    const size = pick(sizes)
    const position = pick(positions)
    const px = pick(world.sizes[size].px)
    const [cx, cy] = world.positions[position]
    const color2 = pick(colours.filter((x) => x !== c.color && x !== c.background))
    const shape2 = pick(world.shapes.filter((x) => x !== c.shape))
    const { img } = render(
      S,
      world.colors[c.color],
      c.shape,
      world.backgrounds[c.background],
      px,
      cx,
      cy,
    )
    return {
      ...c,
      position,
      img,
      color2,
      shape2,
      seed: k,
      prompt: `a ${color2} ${shape2} on a ${c.background} background`,
    }
  })
  const outs: Record<string, RgbImage[]> = {}
  for (const [variant, strength] of [
    ['another shape', 0.3],
    ['another shape', 0.9],
    ['the same shape', 0.3],
    ['the same shape', 0.9],
  ] as const) {
    const js: ReturnType<typeof judge>[] = []
    const key = `${variant} ${strength}`
    outs[key] = []
    const t0 = performance.now()
    for (const c of i2i) {
      const {
        images: [img],
      } = await pipe.generate({
        prompt:
          variant === 'the same shape'
            ? `a ${c.color2} ${c.shape} on a ${c.background} background`
            : c.prompt,
        seed: c.seed,
        image: c.img,
        strength,
      })
      outs[key].push(img)
      js.push(judge(world, img, c.background))
    }
    const ms = (performance.now() - t0) / i2i.length
    console.log(
      `image-to-image, prompt naming another colour and ${variant}, strength ${strength}: input shape and position kept ${share(js.map((j, i) => j?.shape === i2i[i].shape && j?.position === i2i[i].position))}, ` +
        `input colour ${share(js.map((j, i) => j?.color === i2i[i].color))}, prompt colour ${share(js.map((j, i) => j?.color === i2i[i].color2))}, ` +
        `prompt shape ${share(js.map((j, i) => j?.shape === (variant === 'the same shape' ? i2i[i].shape : i2i[i].shape2)))} (${ms.toFixed(0)} ms/image)`,
    )
  }
  for (let i = 0; i < Math.min(8, n); i++)
    sheets.img2img.push(i2i[i].img, outs['another shape 0.3'][i], outs['another shape 0.9'][i])

  // inpainting
  const inp = Array.from({ length: n }, (_, k) => {
    const c = pick(combos)
    const size = pick(sizes)
    const position = pick(positions)
    const px = pick(world.sizes[size].px)
    const [cx, cy] = world.positions[position]
    const color2 = pick(colours.filter((x) => x !== c.color && x !== c.background))
    const { img, mask: shapeMask } = render(
      S,
      world.colors[c.color],
      c.shape,
      world.backgrounds[c.background],
      px,
      cx,
      cy,
    )
    let [x0, y0, x1, y1] = [S, S, 0, 0]
    for (let i = 0; i < S * S; i++)
      if (shapeMask[i]) {
        const [x, y] = [i % S, Math.floor(i / S)]
        ;[x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)]
      }
    ;[x0, y0] = [
      Math.max(0, Math.floor((x0 - 3) / 8) * 8),
      Math.max(0, Math.floor((y0 - 3) / 8) * 8),
    ]
    ;[x1, y1] = [Math.min(S, Math.ceil((x1 + 4) / 8) * 8), Math.min(S, Math.ceil((y1 + 4) / 8) * 8)]
    const mask: GrayImage = { width: S, height: S, data: new Uint8Array(S * S) }
    for (let y = y0; y < y1; y++) mask.data.fill(255, y * S + x0, y * S + x1)
    const where = position === 'centre' ? 'in the centre' : `in the ${position}`
    return {
      ...c,
      position,
      img,
      mask,
      color2,
      seed: k,
      prompt: `a ${size} ${color2} ${c.shape} ${where} on a ${c.background} background`,
    }
  })
  // Without the overlay the outside is the VAE's reconstruction; with it, the input's pixels.
  for (const maskOverlay of [false, true]) {
    const within: number[] = []
    const withinFar: number[] = []
    const allWithin: boolean[] = []
    const insideColour: boolean[] = []
    const insideShape: boolean[] = []
    const t0 = performance.now()
    for (const c of inp) {
      const {
        images: [img],
      } = await pipe.generate({
        prompt: c.prompt,
        seed: c.seed,
        image: c.img,
        mask: c.mask,
        maskOverlay,
      })
      const bg = world.backgrounds[c.background]
      const crop = { ...img, data: img.data.slice() }
      let [ok, outside, okFar, far] = [0, 0, 0, 0]
      for (let i = 0; i < S * S; i++) {
        if (c.mask.data[i]) continue
        outside++
        let d = 0
        for (let ch = 0; ch < 3; ch++)
          d = Math.max(d, Math.abs(img.data[3 * i + ch] - c.img.data[3 * i + ch]))
        ok += +(d <= 8)
        crop.data.set(bg, 3 * i)
        // more than one latent cell (8 px) from the mask: out of the decoder's reach across the edge
        const [x, y] = [i % S, Math.floor(i / S)]
        let near = false
        for (let v = Math.max(0, y - 8); v <= Math.min(S - 1, y + 8) && !near; v++)
          for (let u = Math.max(0, x - 8); u <= Math.min(S - 1, x + 8) && !near; u++)
            near = c.mask.data[v * S + u] > 0
        if (!near) {
          far++
          okFar += +(d <= 8)
        }
      }
      within.push(ok / outside)
      if (far) withinFar.push(okFar / far)
      allWithin.push(ok === outside)
      const j = judge(world, crop, c.background)
      insideColour.push(j?.color === c.color2)
      insideShape.push(j?.shape === c.shape)
      if (!maskOverlay && sheets.inpaint.length < 24) {
        const shown = { ...c.img, data: c.img.data.slice() }
        for (let i = 0; i < S * S; i++)
          if (c.mask.data[i])
            for (let ch = 0; ch < 3; ch++)
              shown.data[3 * i + ch] = shown.data[3 * i + ch] * 0.5 + 64
        sheets.inpaint.push(c.img, shown, img)
      }
    }
    console.log(
      `inpainting${maskOverlay ? ' with mask_overlay' : ''}: outside pixels within ±8 ${((100 * within.reduce((a, b) => a + b, 0)) / within.length).toFixed(2)}%, ` +
        `those more than 8 px from the mask ${((100 * withinFar.reduce((a, b) => a + b, 0)) / Math.max(1, withinFar.length)).toFixed(2)}% (${withinFar.length} images have some), ` +
        `images with every outside pixel within ±8 ${share(allWithin)}, inside the prompt's colour ${share(insideColour)}, ` +
        `inside the shape ${share(insideShape)} (${((performance.now() - t0) / inp.length).toFixed(0)} ms/image)`,
    )
  }

  // ControlNet
  const cns = Array.from({ length: n }, (_, k) => {
    const shape = pick(world.shapes)
    const c = pick(combos.filter((x) => x.shape === shape))
    const px = 14 + Math.floor(rnd() * 21)
    const cx = px / 2 + rnd() * (S - px)
    const cy = px / 2 + rnd() * (S - px)
    const { img: target, mask } = render(
      S,
      world.colors[c.color],
      shape,
      world.backgrounds[c.background],
      px,
      cx,
      cy,
    )
    const control = render(S, [255, 255, 255], shape, [0, 0, 0], px, cx, cy).img
    return {
      ...c,
      target,
      mask,
      control,
      seed: k,
      prompt: `a ${c.color} ${shape} on a ${c.background} background`,
    }
  })
  for (const controlScale of [1, 0]) {
    const ious: number[] = []
    const colourOk: boolean[] = []
    const t0 = performance.now()
    for (const c of cns) {
      const {
        images: [img],
      } = await pipe.generate({
        prompt: c.prompt,
        seed: c.seed,
        controlImage: c.control,
        controlScale,
      })
      const bg = world.backgrounds[c.background]
      let [inter, union] = [0, 0]
      for (let i = 0; i < S * S; i++) {
        const fg =
          Math.hypot(
            img.data[3 * i] - bg[0],
            img.data[3 * i + 1] - bg[1],
            img.data[3 * i + 2] - bg[2],
          ) > thr
        const sil = c.mask[i] > 0
        inter += +(fg && sil)
        union += +(fg || sil)
      }
      ious.push(inter / Math.max(1, union))
      colourOk.push(judge(world, img, c.background)?.color === c.color)
      if (controlScale === 1 && sheets.controlnet.length < 24)
        sheets.controlnet.push(c.control, img)
    }
    console.log(
      `ControlNet scale ${controlScale}: IoU with the silhouette mean ${(ious.reduce((a, b) => a + b, 0) / ious.length).toFixed(3)}, ` +
        `IoU ≥ 0.85 ${share(ious.map((v) => v >= 0.85))}, colour ${share(colourOk)} (${((performance.now() - t0) / cns.length).toFixed(0)} ms/image)`,
    )
  }
  if (sheetPrefix)
    for (const [kind, imgs] of Object.entries(sheets))
      writeFileSync(
        `${sheetPrefix}-${kind}.png`,
        encodePng(contactSheet(imgs, kind === 'controlnet' ? 8 : 6)),
      )
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
      prompts: { type: 'string', default: 'full' },
      sheet: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string', default: '7.5,1' },
      'guidance-rescale': { type: 'string', default: '0' },
      dump: { type: 'string' },
      conditioners: { type: 'string' },
      'conditioner-sheets': { type: 'string' },
    },
  })
  const dir = values.model
  const world: World = JSON.parse(readFileSync(join(dir, 'world.json'), 'utf8'))
  const heldout: Combo[] = JSON.parse(readFileSync(join(dir, 'heldout.json'), 'utf8'))
  const combos =
    values.combos === 'train'
      ? trainingCombos(world, heldout)
      : values.combos === 'all'
        ? [...trainingCombos(world, heldout), ...heldout]
        : heldout
  const cases = buildCases(world, combos, Number(values['per-combo']), values.prompts)
  const t0 = performance.now()
  const pipe = new StableDiffusionPipeline(
    await loadModel(folderSource(dir), createNodeBackend('cpu')),
  )
  if (values.conditioners) {
    const all = [...trainingCombos(world, heldout), ...heldout]
    await evalConditioners(
      pipe,
      world,
      all,
      Number(values.conditioners),
      values['conditioner-sheets'],
    )
    return
  }
  const steps = values.steps ? Number(values.steps) : pipe.spec.defaults.steps
  console.log(
    `${cases.length} ${values.combos} ${values.prompts} prompts (${combos.length} combos), ${pipe.spec.defaults.scheduler}, ${steps} steps, model load ${(performance.now() - t0).toFixed(0)} ms`,
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
      const j = judge(world, img, c.background || borderBackground(world, img))
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
