/**
 * The API reference (`GET /docs`) in real headless Chromium (Debian's package, driven by
 * playwright-core) against the real worker: it renders every operation of /openapi.json with
 * its schemas, and its "Try it" forms send real requests: GET /healthz without a key, GET
 * /v1/models with one, and POST /v1/images from the document's example body, showing the PNG.
 * Also runs the curl example of docs/api.md's OpenAPI section as written.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWorker, type RunningWorker } from './worker-server'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

const CHROMIUM = RUNTIME_PATHS.chromium
const SKIP = skipWithout('docs test', ['chromium'])

describe.skipIf(SKIP)('/docs in headless Chromium', () => {
  let worker: RunningWorker
  let key: string
  let browser: Browser
  let page: Page
  let operationIds: string[]
  const consoleErrors: string[] = []

  beforeAll(async () => {
    worker = await startWorker()
    key = (await worker.createKey({ name: 'docs' })).key
    const doc = (await (await fetch(`${worker.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { operationId: string }>>
    }
    operationIds = Object.values(doc.paths).flatMap((item) =>
      Object.values(item).map((op) => op.operationId),
    )
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
    // Two shared cores: wrangler's dev server can stall for tens of seconds (e.g. while it gives
    // up fetching the Request.cf object offline), far past playwright's 30 s default.
    page.setDefaultTimeout(120_000)
    // CSP violations and script errors land here; the page must have none. (Chromium also logs
    // each non-2xx fetch, and this test sends a 401 on purpose.)
    page.on(
      'console',
      (m) =>
        m.type() === 'error' &&
        !m.text().startsWith('Failed to load resource: the server responded with a status of') &&
        consoleErrors.push(m.text()),
    )
    page.on('pageerror', (e) => consoleErrors.push(e.message))
    // Nothing may be fetched from another origin (the page works offline).
    page.on('request', (r) => {
      if (!r.url().startsWith(worker.url) && !r.url().startsWith('blob:')) {
        consoleErrors.push(`external request ${r.url()}`)
      }
    })
  })

  afterAll(async () => {
    await browser?.close()
    await worker?.stop()
  })

  it('renders every operation of /openapi.json with its body schema and responses', async () => {
    await page.goto(`${worker.url}/docs`)
    await page.waitForSelector('#ops[data-ready="true"]')
    const rendered = await page.$$eval('details.op', (els) =>
      els.map((e) => e.getAttribute('data-operation-id')),
    )
    expect(rendered.sort()).toEqual([...operationIds].sort())

    const op = '#op-createImages'
    await page.click(`${op} > summary`)
    // The request body schema lists the fields, the required one marked, bounds shown.
    const fields = await page.$$eval(`${op} .request-body > ul > li`, (els) =>
      els.map((e) => e.getAttribute('data-field')),
    )
    expect(fields).toEqual(expect.arrayContaining(['prompt', 'seed', 'steps', 'width', 'n']))
    expect(await page.textContent(`${op} .request-body li[data-field="seed"]`)).toContain(
      'maximum 4294967295',
    )
    expect(await page.$(`${op} .request-body li[data-field="prompt"] .req`)).not.toBeNull()
    // Responses, problem statuses included.
    const statuses = await page.$$eval(`${op} tr[data-status]`, (els) =>
      els.map((e) => e.getAttribute('data-status')),
    )
    expect(statuses).toEqual(expect.arrayContaining(['200', '401', '422', '429', '500']))
    expect(await page.textContent(`${op} tr[data-status="422"]`)).toContain('prompt-too-long')
  })

  it('tries GET /healthz (no key) and GET /v1/models (with the key) from the page', async () => {
    await page.click('#op-health > summary')
    await page.click('#op-health form.try button[type="submit"]')
    await page.waitForSelector('#op-health .result .status')
    expect(await page.textContent('#op-health .result .status')).toContain('200')
    expect(await page.textContent('#op-health .result pre.body')).toContain('"status": "ok"')

    await page.click('#op-listModels > summary')
    await page.click('#op-listModels form.try button[type="submit"]')
    await page.waitForSelector('#op-listModels .result .status')
    // No key yet: the API's problem is shown as it came.
    expect(await page.textContent('#op-listModels .result .status')).toContain('401')
    expect(await page.textContent('#op-listModels .result pre.headers')).toContain(
      'content-type: application/problem+json',
    )

    await page.fill('#api-key', key)
    await page.dispatchEvent('#api-key', 'change')
    await page.click('#op-listModels form.try button[type="submit"]')
    await expect.poll(() => page.textContent('#op-listModels .result .status')).toContain('200')
    expect(await page.textContent('#op-listModels .result pre.body')).toContain('"schedulers"')
  })

  it("sends POST /v1/images with the document's example body and shows the PNG", async () => {
    const op = '#op-createImages'
    const body = JSON.parse(await page.inputValue(`${op} textarea[name="body"]`))
    expect(body).toMatchObject({ prompt: expect.any(String), seed: 42, steps: 4 })
    await page.selectOption(`${op} select[name="accept"]`, 'image/png')
    await page.click(`${op} form.try button[type="submit"]`)
    await page.waitForSelector(`${op} .result img`, { timeout: 60_000 })
    expect(await page.textContent(`${op} .result .status`)).toContain('200')
    expect(await page.textContent(`${op} .result pre.headers`)).toMatch(/x-cache: (HIT|MISS)/)
    const size = () =>
      page.$eval(`${op} .result img`, (el) => {
        const img = el as unknown as { complete: boolean; naturalWidth: number }
        return img.complete ? img.naturalWidth : 0
      })
    await expect.poll(size).toBeGreaterThan(0)

    const shot = path.join(tmpdir(), 'tti-docs.png')
    await page.screenshot({ path: shot, fullPage: true })
    console.log(`docs screenshot: ${shot}`)
    expect(consoleErrors).toEqual([])
  })

  it("runs docs/api.md's OpenAPI curl example as written", async () => {
    const heading = '### OpenAPI: `GET /openapi.json` and `GET /docs`'
    const [, rest] = readFileSync('docs/api.md', 'utf8').split(`\n${heading}\n`)
    const section = rest.split(/\n#{2,3} /)[0]
    const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1])
    expect(blocks).toHaveLength(1)
    const dir = mkdtempSync(path.join(tmpdir(), 'tti-docs-'))
    try {
      // Asynchronously: the worker's dev server answers from this very process.
      await promisify(execFile)(
        'bash',
        ['-euo', 'pipefail', '-c', blocks[0].replaceAll('localhost:8787', worker.url)],
        { cwd: dir, timeout: 30_000 },
      )
      const doc = JSON.parse(readFileSync(path.join(dir, 'openapi.json'), 'utf8'))
      expect(doc.openapi).toMatch(/^3\.1\./)
      expect(Object.keys(doc.paths)).toContain('/v1/images')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
