/**
 * The playground (`GET /`) in real headless Chromium (Debian's package, driven by
 * playwright-core) against the real worker: enter a key, type a prompt, generate, watch the
 * progress bar fill step by step (server-sent events), and see the image load from its permanent
 * URL, with the embed snippet to paste.
 *
 * Pictures: the controls follow each model's `conditioning` from `GET /v1/models`. The bundled
 * model is driven with whatever it takes today (a full image-to-image round trip once it has a
 * VAE encoder, else the controls disabled with its reasons); a second worker whose bundled model
 * is assembled from the golden tiny models (../shared/golden: the ControlNet pipeline plus the
 * img2img VAE encoder, whose decoder is the same file) takes image, mask and control image, so
 * the whole round trip runs for real whatever the bundled model can do. Nothing is intercepted.
 */
import {
  chmodSync,
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { decode, encode } from 'fast-png'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GOLDEN } from './golden'
import { decodePngRgb } from './png-decode'
import { startWorker, type RunningWorker } from './worker-server'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

const CHROMIUM = RUNTIME_PATHS.chromium
const SKIP = skipWithout('playground test', ['chromium'])
const STEPS = 40
/** Screenshots of every run, kept for a person to look at. */
const SHOTS = mkdtempSync(path.join(tmpdir(), 'tti-playground-'))

type Conditioning = Record<'text' | 'image' | 'mask' | 'control_image', true | string>

let browser: Browser
const consoleErrors: string[] = []

beforeAll(async () => {
  if (SKIP) return
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--headless=new',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  })
  console.log(`playground screenshots: ${SHOTS}`)
})

afterAll(async () => {
  await browser?.close()
})

async function newPage(): Promise<Page> {
  const page = await browser.newPage()
  // CSP violations and script errors land here; the page must have none.
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()))
  page.on('pageerror', (e) => consoleErrors.push(e.message))
  return page
}

async function enterKey(page: Page, url: string, key: string): Promise<void> {
  await page.goto(`${url}/`)
  await page.fill('#api-key', key)
  await page.dispatchEvent('#api-key', 'change')
  // Schedulers come from /v1/models once the key is known; allow for two shared cores.
  await page.waitForSelector('#scheduler option', { state: 'attached', timeout: 30_000 })
  await expect.poll(() => page.isEnabled('#generate'), { timeout: 30_000 }).toBe(true)
}

/** The image's natural size once it has loaded (no DOM lib here: read the fields structurally). */
function loadedSize(page: Page, selector: string) {
  return page.$eval(selector, (el) => {
    const img = el as unknown as {
      complete: boolean
      naturalWidth: number
      naturalHeight: number
    }
    return img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null
  })
}

async function modelConditioning(url: string, key: string): Promise<Record<string, Conditioning>> {
  const res = await fetch(`${url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } })
  const { models } = (await res.json()) as { models: { id: string; conditioning: Conditioning }[] }
  return Object.fromEntries(models.map((m) => [m.id, m.conditioning]))
}

/**
 * Each picture control is enabled exactly when the model takes its field; otherwise it is
 * disabled, its title is the model's reason and the hint beside it says so.
 */
async function expectControls(page: Page, c: Conditioning): Promise<void> {
  for (const [field, input, hint] of [
    ['image', '#init-file', '#image-why'],
    ['control_image', '#control-file', '#control-why'],
  ] as const) {
    expect(await page.isDisabled(input), field).toBe(c[field] !== true)
    if (c[field] === true) continue
    expect(await page.getAttribute(input, 'title')).toBe(c[field])
    expect(await page.textContent(hint)).toBe(c[field])
    expect(await page.isVisible(hint)).toBe(true)
  }
  if (c.image !== true) {
    expect(await page.isDisabled('#use-result')).toBe(true)
    expect(await page.getAttribute('#use-result', 'title')).toBe(c.image)
  }
  // The mask is drawn on the init image; its own reason shows even before one is set.
  expect(await page.textContent('#mask-why')).toBe(c.mask === true ? '' : c.mask)
  if (c.mask !== true) expect(await page.getAttribute('#brush', 'title')).toBe(c.mask)
}

/** Generates a small text-to-image picture; returns its permanent URL and size. */
async function generateText(page: Page, prompt: string, seed: number) {
  await page.fill('#prompt', prompt)
  await page.fill('#seed', String(seed))
  await page.fill('#steps', '4')
  const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/v1/images'))
  await page.click('#generate')
  expect((await sent).headers()['content-type']).toBe('application/json')
  await page.waitForSelector('#result', { state: 'visible' })
  await expect.poll(() => loadedSize(page, '#image'), { timeout: 30_000 }).not.toBeNull()
  const [width, height] = (await loadedSize(page, '#image'))!
  return { url: await page.inputValue('#permalink'), width, height }
}

/** Pixel standard deviation of a PNG (any colour type), so a blank screenshot is caught. */
function pngSpread(png: Uint8Array): number {
  const { data } = decode(png)
  let sum = 0
  let sq = 0
  for (const v of data) {
    sum += v
    sq += v * v
  }
  const mean = sum / data.length
  return Math.sqrt(sq / data.length - mean * mean)
}

/** Saves a full-page screenshot and checks it is not blank. */
async function screenshot(page: Page, name: string): Promise<void> {
  const file = path.join(SHOTS, `${name}.png`)
  const shot = await page.screenshot({ path: file, fullPage: true })
  expect(pngSpread(shot), file).toBeGreaterThan(10)
}

/** A white disc on black, `width × height`: a ControlNet silhouette. */
function silhouette(width: number, height: number): Buffer {
  const data = new Uint8Array(width * height * 3)
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      if ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (Math.min(width, height) / 3) ** 2)
        data.fill(255, (y * width + x) * 3, (y * width + x + 1) * 3)
  return Buffer.from(encode({ width, height, data, channels: 3, depth: 8 }))
}

/** The mask the page would send, decoded in the page: size, base64 bytes and white pixels. */
const READ_MASK = `(async () => {
  const blob = await window.__playground.maskBlob()
  if (!blob) return null
  const bmp = await createImageBitmap(blob)
  const c = new OffscreenCanvas(bmp.width, bmp.height)
  const ctx = c.getContext('2d')
  ctx.drawImage(bmp, 0, 0)
  const d = ctx.getImageData(0, 0, bmp.width, bmp.height).data
  const white = []
  for (let i = 0; i < d.length; i += 4) if (d[i] >= 128) white.push(i / 4)
  const bytes = new Uint8Array(await blob.arrayBuffer())
  return {
    type: blob.type, width: bmp.width, height: bmp.height, white,
    opaque: d.every((v, i) => i % 4 !== 3 || v === 255),
    base64: btoa(String.fromCharCode(...bytes)),
  }
})()`

/** Records the entries of each FormData the page passes to fetch into `window.sentForms`. */
const RECORD_FORMS = `{
  const fetch = window.fetch
  window.sentForms = []
  window.fetch = (input, init) => {
    if (init && init.body instanceof FormData)
      window.sentForms.push([...init.body].map(([k, v]) =>
        [k, typeof v === 'string' ? v : { name: v.name, type: v.type, size: v.size }]))
    return fetch(input, init)
  }
}`

type MaskRead = {
  type: string
  width: number
  height: number
  white: number[]
  opaque: boolean
  base64: string
}

/**
 * The image-to-image round trip, as a person does it: generate, "Use the last result", set the
 * strength, draw a mask stroke with the mouse, upload a silhouette (where the model takes each),
 * generate again; the request is one multipart body with the stored image by URL, and the same
 * request from Node is a cache hit with the same URL, so the page sent exactly those fields.
 */
async function pictureRoundTrip(
  page: Page,
  worker: RunningWorker,
  key: string,
  c: Conditioning,
  name: string,
) {
  const first = await generateText(page, 'a red circle on a white background', 3)
  const { width: w, height: h } = first
  await expectControls(page, c)
  expect(await page.isEnabled('#use-result')).toBe(true)
  expect(await page.isDisabled('#strength')).toBe(true) // no init image yet

  await page.click('#use-result')
  await expect.poll(() => loadedSize(page, '#init-thumb')).toEqual([w, h])
  expect(await page.getAttribute('#init-thumb', 'src')).toBe(first.url)
  expect(await page.isDisabled('#size')).toBe(true) // the picture sets the size
  expect(await page.textContent('#strength-out')).toBe('0.80')
  await page.fill('#strength', '0.6')
  expect(await page.textContent('#strength-out')).toBe('0.60')

  let mask: MaskRead | null = null
  if (c.mask === true) {
    // The canvas holds the picture's pixels and is shown scaled up over it.
    expect(
      await page.$eval('#mask', (el) => [el.getAttribute('width'), el.getAttribute('height')]),
    ).toEqual([String(w), String(h)])
    await page.fill('#brush', '8')
    // Mouse positions are in the viewport: the canvas is scrolled into it first.
    await page.locator('#mask').scrollIntoViewIfNeeded()
    const box = (await page.locator('#mask').boundingBox())!
    expect(box.width).toBeGreaterThan(2 * w)
    expect(await page.evaluate(READ_MASK)).toBeNull() // nothing drawn: no mask is sent
    const y = box.y + box.height / 2
    await page.mouse.move(box.x + box.width / 4, y)
    await page.mouse.down()
    for (let i = 1; i <= 8; i++) await page.mouse.move(box.x + (box.width * (2 + i / 2)) / 8, y)
    await page.mouse.up()
    mask = (await page.evaluate(READ_MASK)) as MaskRead
    expect(mask).toMatchObject({ type: 'image/png', width: w, height: h, opaque: true })
    // White along the stroke (the middle row, a quarter to three quarters across), black away
    // from it: brush 8 is ±4 pixels, plus a pixel of antialiasing.
    const white = new Set(mask.white)
    for (let x = Math.ceil(w / 4); x <= Math.floor((3 * w) / 4); x++)
      expect(white.has(Math.floor(h / 2) * w + x), `x=${x}`).toBe(true)
    for (const i of white) expect(Math.abs(Math.floor(i / w) + 0.5 - h / 2)).toBeLessThanOrEqual(6)
    expect(white.has(0)).toBe(false)
  }

  let control: Buffer | undefined
  if (c.control_image === true) {
    control = silhouette(w, h)
    await page.setInputFiles('#control-file', {
      name: 'silhouette.png',
      mimeType: 'image/png',
      buffer: control,
    })
    await expect.poll(() => loadedSize(page, '#control-thumb')).toEqual([w, h])
    await page.fill('#control-scale', '1.5')
    expect(await page.textContent('#control-scale-out')).toBe('1.50')
  }
  await screenshot(page, `${name}-pictures-set`)

  // Chromium does not report a body with blob parts, so the fields the page hands to fetch are
  // recorded on their way (and passed on untouched).
  await page.evaluate(RECORD_FORMS)
  const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/v1/images'))
  await page.click('#generate')
  expect((await sent).headers()['content-type']).toMatch(/^multipart\/form-data; boundary=/)
  await expect.poll(() => page.inputValue('#permalink'), { timeout: 60_000 }).not.toBe(first.url)
  expect(await page.textContent('#status-text')).toMatch(/^Done/)
  await expect.poll(() => loadedSize(page, '#image'), { timeout: 30_000 }).toEqual([w, h])
  const second = await page.inputValue('#permalink')
  expect(await page.isHidden('#stale')).toBe(true)

  // The result changed: other pixels than the init image's.
  const pixels = async (url: string) =>
    decodePngRgb(new Uint8Array(await (await fetch(url)).arrayBuffer()))
  const [a, b] = [await pixels(first.url), await pixels(second)]
  expect(a.some((v, i) => v !== b[i])).toBe(true)

  // The init image went by its URL, no bytes; the mask and the silhouette as PNG file parts.
  const [parts] = (await page.evaluate('window.sentForms')) as [string, unknown][][]
  const expected: [string, unknown][] = [
    ['prompt', 'a red circle on a white background'],
    ['scheduler', await page.inputValue('#scheduler')],
    ['model', await page.inputValue('#model')],
    ['seed', '3'],
    ['steps', '4'],
    ['strength', '0.6'],
  ]
  if (control) expected.push(['control_scale', '1.5'])
  expected.push(['image', first.url])
  const maskPng = mask && Buffer.from(mask.base64, 'base64')
  if (maskPng)
    expected.push(['mask', { name: 'mask.png', type: 'image/png', size: maskPng.length }])
  if (control)
    expected.push([
      'control_image',
      { name: 'silhouette.png', type: 'image/png', size: control.length },
    ])
  expect(parts).toEqual(expected)

  // The same request from Node, the init image by its URL: a cache hit, the same image.
  const form = new FormData()
  for (const [k, v] of expected) if (typeof v === 'string') form.append(k, v)
  if (maskPng) form.append('mask', new Blob([maskPng]), 'mask.png')
  if (control) form.append('control_image', new Blob([control]), 'silhouette.png')
  const api = await fetch(`${worker.url}/v1/images`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
    body: form,
  })
  expect(await api.json()).toMatchObject({ cached: true, images: [{ url: second }] })
  await screenshot(page, `${name}-result`)
  expect(consoleErrors).toEqual([])
}

describe.skipIf(SKIP)('playground in headless Chromium', () => {
  let worker: RunningWorker
  let key: string
  let page: Page

  beforeAll(async () => {
    worker = await startWorker()
    key = (await worker.createKey({ name: 'playground' })).key
    page = await newPage()
  })

  afterAll(async () => {
    await worker?.stop()
  })

  it('serves one HTML page whose CSP allows exactly its inline script', async () => {
    const res = await fetch(`${worker.url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('content-security-policy')).toMatch(/script-src 'sha256-[^']+'/)
  })

  it('generates from a prompt with live step progress, then shows the image, its URL and an <img> snippet', async () => {
    await enterKey(page, worker.url, key)
    await page.waitForSelector('#scheduler option[value="euler"]', { state: 'attached' })

    await page.fill('#prompt', 'a red circle on a white background')
    await page.fill('#negative', 'blurry')
    await page.fill('#seed', '42')
    // Enough steps that the bar is seen filling (the bundled model does ~50 steps/s in wasm).
    await page.fill('#steps', String(STEPS))
    await page.fill('#guidance', '7.5')
    await page.selectOption('#size', '64x64')
    await page.selectOption('#scheduler', 'euler')
    // Record every change of the bar, with whether the result was showing yet (a string, so it
    // runs in the page without DOM types here).
    await page.evaluate(`
      window.progressLog = []
      new MutationObserver(() => {
        const bar = document.getElementById('progress')
        window.progressLog.push({
          value: bar.hasAttribute('value') ? bar.value : null,
          max: bar.max,
          resultHidden: document.getElementById('result').hidden,
        })
      }).observe(document.getElementById('progress'), { attributes: true })
    `)
    const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/v1/images'))
    await page.click('#generate')
    // No picture: a JSON body, with the size from the form.
    const req = await sent
    expect(req.headers()['content-type']).toBe('application/json')
    expect(req.postDataJSON()).toMatchObject({ width: 64, height: 64, steps: STEPS })

    await page.waitForSelector('#result', { state: 'visible' }).catch(async (e) => {
      // Say what the page said (a failure, or still generating) rather than only "timeout".
      throw new Error(`no result; the page says: ${await page.textContent('#status-text')}`, {
        cause: e,
      })
    })
    // The image loads from its permanent URL.
    await expect.poll(() => loadedSize(page, '#image'), { timeout: 30_000 }).toEqual([64, 64])
    expect(await page.isHidden('#progress')).toBe(true)
    // The bar was determinate and filled step by step before the image appeared.
    const log = (await page.evaluate('window.progressLog')) as {
      value: number | null
      max: number
      resultHidden: boolean
    }[]
    const steps = log.filter((e) => e.value !== null && e.resultHidden)
    expect(steps.some((e) => e.value! > 0 && e.value! < STEPS)).toBe(true)
    expect(steps.every((e) => e.max === STEPS)).toBe(true)
    expect(steps.map((e) => e.value)).toEqual(steps.map((e) => e.value).sort((a, b) => a! - b!))
    expect(steps.at(-1)!.value).toBe(STEPS)

    const url = await page.inputValue('#permalink')
    expect(url).toMatch(new RegExp(`^${worker.url}/v1/images/[0-9a-f]{64}\\.png$`))
    expect(await page.inputValue('#embed')).toBe(
      `<img src="${url}" width="64" height="64" alt="a red circle on a white background">`,
    )
    expect(await page.textContent('#meta')).toContain('seed 42')

    // The same request through the API is a cache hit with the same URL.
    const api = await fetch(`${worker.url}/v1/images`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        Accept: 'application/json',
      },
      body: JSON.stringify({
        prompt: 'a red circle on a white background',
        negative_prompt: 'blurry',
        seed: 42,
        steps: STEPS,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        scheduler: 'euler',
      }),
    })
    expect(await api.json()).toMatchObject({ cached: true, images: [{ url }] })

    await screenshot(page, 'text-to-image')
    expect(consoleErrors).toEqual([])
  })

  it('keeps the key in localStorage, shows API errors as text and clears the previous image', async () => {
    await page.reload()
    expect(await page.inputValue('#api-key')).toBe(key)
    // /v1/models again: allow for two cores shared with other work (the default poll is 1 s).
    await expect.poll(() => page.isEnabled('#generate'), { timeout: 30_000 }).toBe(true)
    const before = await generateText(page, 'a blue square', 1)
    expect(await page.isHidden('#stale')).toBe(true)

    await page.fill('#steps', '1000')
    // Bypass the browser's own min/max check to reach the API's validation.
    await page.$eval('#steps', (el) => el.removeAttribute('max'))
    await page.click('#generate')
    await page.waitForSelector('#status.error')
    expect(await page.textContent('#status-text')).toMatch(/steps: must be between 1 and \d+/)
    // No image is left on screen to pass for this request's result.
    expect(await page.isHidden('#result')).toBe(true)
    expect(await page.getAttribute('#image', 'src')).toBeNull()
    expect(await page.inputValue('#permalink')).toBe('')
    expect(await page.inputValue('#embed')).toBe('')
    expect(before.url).toMatch(/\.png$/)
    await screenshot(page, 'failed-request')
    // Chromium logs the refused request itself; nothing else went wrong.
    expect(consoleErrors).toEqual([expect.stringMatching(/status of 422/)])
    consoleErrors.length = 0
  })

  it('lists each scheduler once, by a readable name and the value it sends', async () => {
    const fresh = await newPage()
    await enterKey(fresh, worker.url, key)
    const options = await fresh.$$eval('#scheduler option', (els) =>
      els.map((el) => ({
        value: el.getAttribute('value')!,
        text: el.textContent!,
        selected: (el as unknown as { selected: boolean }).selected,
      })),
    )
    // 23 accepted names (aliases and class names) are 13 distinct schedulers.
    const res = await fetch(`${worker.url}/v1/models`, {
      headers: { Authorization: `Bearer ${key}` },
    })
    const [model] = ((await res.json()) as { models: { schedulers: string[] }[] }).models
    expect(model.schedulers).toHaveLength(23)
    expect(options).toHaveLength(13)
    expect(new Set(options.map((o) => o.value)).size).toBe(13)
    for (const o of options) {
      expect(model.schedulers).toContain(o.value)
      expect(o.text.endsWith(` (${o.value})`), o.text).toBe(true)
    }
    expect(options.map((o) => o.text)).toEqual(
      expect.arrayContaining(['Euler ancestral (euler_a)', 'PNDM / PLMS (pndm)', 'DDIM (ddim)']),
    )
    for (const dup of [
      'plms',
      'euler_ancestral',
      'EulerAncestralDiscreteScheduler',
      'DDIMScheduler',
    ])
      expect(options.map((o) => o.value)).not.toContain(dup)
    // The model's default (DDIMScheduler in its scheduler config) is preselected by its alias.
    expect(options.filter((o) => o.selected).map((o) => o.value)).toEqual(['ddim'])
    // The key field says where keys come from.
    expect(await fresh.textContent('#key-hint')).toContain('npm run keys -- create')
    expect(await fresh.isVisible('#key-hint')).toBe(true)
    await screenshot(fresh, 'schedulers-and-key-hint')
    await fresh.close()
    expect(consoleErrors).toEqual([])
  })

  it('advises its own truncate checkbox for a long prompt, and sends truncate: true when ticked', async () => {
    const fresh = await newPage()
    await enterKey(fresh, worker.url, key)
    const long = Array(10).fill('a red circle').join(' and ') // 39 tokens, over the 18-token window
    await fresh.fill('#prompt', long)
    await fresh.fill('#seed', '2')
    await fresh.fill('#steps', '4')
    await fresh.click('#generate')
    await fresh.waitForSelector('#status.error')
    const text = await fresh.textContent('#status-text')
    expect(text).toMatch(/the prompt has \d+ tokens; this model reads 18\./)
    expect(text).toContain('Tick "Cut a long prompt to fit"')
    expect(text).not.toContain('"truncate": true')
    expect(await fresh.textContent('label.check')).toContain('Cut a long prompt to fit')
    await screenshot(fresh, 'prompt-too-long')

    await fresh.check('#truncate')
    const sent = fresh.waitForRequest(
      (r) => r.method() === 'POST' && r.url().endsWith('/v1/images'),
    )
    await fresh.click('#generate')
    expect((await sent).postDataJSON()).toMatchObject({ prompt: long, truncate: true })
    await fresh.waitForSelector('#result', { state: 'visible' })
    await expect.poll(() => loadedSize(fresh, '#image'), { timeout: 30_000 }).toEqual([64, 64])
    expect(await fresh.textContent('#status-text')).toMatch(/^Done/)
    await screenshot(fresh, 'prompt-truncated')
    await fresh.close()
    expect(consoleErrors).toEqual([expect.stringMatching(/status of 422/)])
    consoleErrors.length = 0
  })

  it("enables the picture controls from the bundled model's /v1/models conditioning", async () => {
    const c = (await modelConditioning(worker.url, key))['tiny-shapes']
    expect(c).toBeDefined()
    const fresh = await newPage()
    await enterKey(fresh, worker.url, key)
    await expectControls(fresh, c)
    if (c.image === true) {
      // The bundled model takes pictures: the whole round trip on it.
      await pictureRoundTrip(fresh, worker, key, c, 'bundled')
    } else {
      // It cannot: even with a result to reuse, the init image stays off with the model's reason,
      // there is no mask to draw and none to send, and the size is still the form's.
      await generateText(fresh, 'a green triangle', 5)
      await expectControls(fresh, c)
      expect(await fresh.getAttribute('#use-result', 'title')).toBe(c.image)
      expect(await fresh.isHidden('#init-view')).toBe(true)
      expect(await fresh.evaluate(READ_MASK)).toBeNull()
      expect(await fresh.isEnabled('#size')).toBe(true)
      await screenshot(fresh, 'bundled-no-pictures')
    }
    await fresh.close()
    expect(consoleErrors).toEqual([])
  })
})

describe.skipIf(SKIP)('playground pictures on a model that takes them all (golden parts)', () => {
  const MODEL = 'tiny-sd-conditioners'
  let assets: string
  let worker: RunningWorker
  let key: string

  beforeAll(async () => {
    // The golden ControlNet pipeline plus the img2img pipeline's VAE encoder (both share one
    // VAE decoder, byte for byte): image-to-image, blend inpainting and ControlNet in one model.
    assets = mkdtempSync(path.join(tmpdir(), 'tti-playground-models-'))
    const dir = path.join(assets, 'tiny-shapes')
    const pipeline = path.join(GOLDEN, 'pipeline')
    cpSync(path.join(pipeline, 'tiny-sd-controlnet'), dir, { recursive: true })
    cpSync(path.join(pipeline, 'tiny-sd-img2img', 'vae_encoder'), path.join(dir, 'vae_encoder'), {
      recursive: true,
    })
    // The golden files are read-only; their copies are written to.
    for (const f of ['', ...readdirSync(dir, { recursive: true, encoding: 'utf8' })])
      chmodSync(path.join(dir, f), 0o755)
    const index = JSON.parse(readFileSync(path.join(dir, 'model_index.json'), 'utf8'))
    Object.assign(index, {
      _name_or_path: MODEL,
      vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
    })
    writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify(index))
    worker = await startWorker({}, { assets })
    key = (await worker.createKey({ name: 'playground-pictures' })).key
  })

  afterAll(async () => {
    await worker?.stop()
    if (assets) rmSync(assets, { recursive: true, force: true })
  })

  it('init image from the last result, strength, a drawn mask and an uploaded silhouette go as one multipart request', async () => {
    const c = (await modelConditioning(worker.url, key))[MODEL]
    expect(c).toEqual({ text: true, image: true, mask: true, control_image: true })
    const page = await newPage()
    await enterKey(page, worker.url, key)
    await pictureRoundTrip(page, worker, key, c, 'golden')
    await page.close()
  })

  it('an uploaded init image goes as a file part; removing the pictures goes back to JSON', async () => {
    const page = await newPage()
    await enterKey(page, worker.url, key)
    await page.fill('#prompt', 'a square')
    await page.fill('#steps', '2')
    await page.setInputFiles('#init-file', {
      name: 'init.png',
      mimeType: 'image/png',
      buffer: silhouette(32, 64),
    })
    // A picked file shows from a blob: URL (the CSP allows it), and sets the size.
    await expect.poll(() => loadedSize(page, '#init-thumb')).toEqual([32, 64])
    expect(await page.getAttribute('#init-thumb', 'src')).toMatch(/^blob:/)
    expect(await page.isDisabled('#size')).toBe(true)
    await page.evaluate(RECORD_FORMS)
    await page.click('#generate')
    await expect.poll(() => loadedSize(page, '#image'), { timeout: 60_000 }).toEqual([32, 64])
    const [parts] = (await page.evaluate('window.sentForms')) as [string, unknown][][]
    expect(parts).toContainEqual([
      'image',
      { name: 'init.png', type: 'image/png', size: expect.any(Number) },
    ])
    expect(parts.map(([k]) => k)).not.toContain('mask') // nothing drawn

    await page.click('#init-clear')
    expect(await page.isHidden('#init-view')).toBe(true)
    expect(await page.isEnabled('#size')).toBe(true)
    expect(await page.isDisabled('#strength')).toBe(true)
    const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/v1/images'))
    await page.click('#generate')
    expect((await sent).headers()['content-type']).toBe('application/json')
    await expect.poll(() => loadedSize(page, '#image'), { timeout: 60_000 }).toEqual([64, 64])
    await page.close()
    expect(consoleErrors).toEqual([])
  })
})
