/**
 * The playground (`GET /`) in real headless Chromium (Debian's package, driven by
 * playwright-core) against the real worker: enter a key, type a prompt, generate, watch the
 * progress bar fill step by step (server-sent events), and see the image load from its permanent
 * URL, with the embed snippet to paste.
 */
import { tmpdir } from 'node:os'
import path from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWorker, type RunningWorker } from './worker-server'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

const CHROMIUM = RUNTIME_PATHS.chromium
const SKIP = skipWithout('playground test', ['chromium'])
const STEPS = 40

describe.skipIf(SKIP)('playground in headless Chromium', () => {
  let worker: RunningWorker
  let key: string
  let browser: Browser
  let page: Page
  const consoleErrors: string[] = []

  beforeAll(async () => {
    worker = await startWorker()
    key = (await worker.createKey({ name: 'playground' })).key
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
    page = await browser.newPage()
    // CSP violations and script errors land here; the page must have none.
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()))
    page.on('pageerror', (e) => consoleErrors.push(e.message))
  })

  afterAll(async () => {
    await browser?.close()
    await worker?.stop()
  })

  it('serves one HTML page whose CSP allows exactly its inline script', async () => {
    const res = await fetch(`${worker.url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('content-security-policy')).toMatch(/script-src 'sha256-[^']+'/)
  })

  it('generates from a prompt with live step progress, then shows the image, its URL and an <img> snippet', async () => {
    await page.goto(`${worker.url}/`)
    await page.fill('#api-key', key)
    await page.dispatchEvent('#api-key', 'change')
    // Schedulers come from /v1/models once the key is known.
    await page.waitForSelector('#scheduler option[value="euler"]', { state: 'attached' })
    await expect.poll(() => page.isEnabled('#generate'), { timeout: 30_000 }).toBe(true)

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
    await page.click('#generate')

    await page.waitForSelector('#result', { state: 'visible' })
    // The image loads from its permanent URL (no DOM lib here: read the fields structurally).
    const loaded = () =>
      page.$eval('#image', (el) => {
        const img = el as unknown as {
          complete: boolean
          naturalWidth: number
          naturalHeight: number
        }
        return img.complete ? [img.naturalWidth, img.naturalHeight] : null
      })
    await expect.poll(loaded, { timeout: 30_000 }).toEqual([64, 64])
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

    const shot = path.join(tmpdir(), 'tti-playground.png')
    await page.screenshot({ path: shot, fullPage: true })
    console.log(`playground screenshot: ${shot}`)
    expect(consoleErrors).toEqual([])
  })

  it('keeps the key in localStorage and shows API errors as text', async () => {
    await page.reload()
    expect(await page.inputValue('#api-key')).toBe(key)
    // /v1/models again: allow for two cores shared with other work (the default poll is 1 s).
    await expect.poll(() => page.isEnabled('#generate'), { timeout: 30_000 }).toBe(true)
    await page.fill('#prompt', 'x')
    await page.fill('#steps', '1000')
    // Bypass the browser's own min/max check to reach the API's validation.
    await page.$eval('#steps', (el) => el.removeAttribute('max'))
    await page.click('#generate')
    await page.waitForSelector('#status.error')
    expect(await page.textContent('#status-text')).toMatch(/steps: must be between 1 and \d+/)
  })
})
