/**
 * Signed embed URLs where they are meant to be used: an `<img>` on a page from another origin,
 * in real headless Chromium against the real worker (wrangler's local runtime, the bundled
 * model). An allowed page shows the image and may `fetch` it (CORS); a page from an origin the
 * URL does not allow gets the 403 problem and a broken image. Then the README's embedding
 * examples run as written (bash, curl, the `tti` CLI) against the same worker.
 */
import { execFile } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TtiClient } from '../../src/client/index'
import { freePort, startWorker, type RunningWorker } from './worker-server'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

const CHROMIUM = RUNTIME_PATHS.chromium
const SKIP = skipWithout('embed browser test', ['chromium'])

let worker: RunningWorker
let key: string

beforeAll(async () => {
  worker = await startWorker()
  key = (await worker.createKey({ name: 'embed-browser' })).key
})

afterAll(async () => {
  await worker?.stop()
})

/** A static page server on its own port (hence its own origin) answering `html` at `/`. */
async function pageServer(html: () => string): Promise<{ origin: string; server: Server }> {
  const port = await freePort()
  const server = createServer((req, res) => {
    if (req.url !== '/') return void res.writeHead(404).end()
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html())
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return { origin: `http://127.0.0.1:${port}`, server }
}

/** The page a static site would ship: the embed URL in an `<img>`, and a CORS `fetch` of it. */
function embedPage(url: string): string {
  return `<!doctype html><title>embed</title>
<img id="embed" src="${url}" alt="embedded">
<script>
  window.corsFetch = fetch(${JSON.stringify(url)}).then(
    (r) => ({ status: r.status, type: r.headers.get('content-type') }),
    (e) => ({ error: String(e) }),
  )
</script>`
}

describe.skipIf(SKIP)('embed URLs in headless Chromium', () => {
  let browser: Browser
  const servers: Server[] = []
  let embedUrl = ''

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--no-first-run'],
    })
  })

  afterAll(async () => {
    await browser?.close()
    for (const s of servers) s.close()
  })

  /** Loads a page and reports the image's outcome, the embed response and the CORS fetch. */
  async function load(origin: string) {
    const page = await browser.newPage()
    try {
      // The image request's outcome: its status, or why the browser dropped it.
      const outcomes: string[] = []
      const isEmbed = (r: { url(): string; resourceType(): string }) =>
        r.url() === embedUrl && r.resourceType() === 'image'
      page.on('response', (r) => isEmbed(r.request()) && outcomes.push(String(r.status())))
      page.on('requestfailed', (r) => isEmbed(r) && outcomes.push(r.failure()?.errorText ?? '?'))
      await page.goto(`${origin}/`)
      // Strings run in the page (no DOM types here); `complete` is true once loaded or broken.
      await page.waitForFunction("document.getElementById('embed').complete", undefined, {
        timeout: 90_000,
      })
      const naturalWidth = (await page.evaluate(
        "document.getElementById('embed').naturalWidth",
      )) as number
      const cors = await page.evaluate('window.corsFetch')
      await expect.poll(() => outcomes.length).toBeGreaterThan(0)
      return { naturalWidth, cors, outcome: outcomes[0] }
    } finally {
      await page.close()
    }
  }

  it('shows the image on an allowed origin and refuses it on another', async () => {
    const allowed = await pageServer(() => embedPage(embedUrl))
    const other = await pageServer(() => embedPage(embedUrl))
    servers.push(allowed.server, other.server)
    expect(allowed.origin).not.toBe(other.origin)
    expect(allowed.origin).not.toBe(worker.url)

    const client = new TtiClient({ baseUrl: worker.url, apiKey: key })
    const minted = await client.createEmbed({
      prompt: 'a red circle',
      seed: 62_001,
      steps: 2,
      origins: [allowed.origin],
      expires_in: 3600,
    })
    embedUrl = minted.url
    expect(embedUrl.startsWith(`${worker.url}/v1/embeds/`)).toBe(true)

    // The <img> sends only a Referer; the allowed page also reads it with fetch (CORS).
    const ok = await load(allowed.origin)
    expect(ok.outcome).toBe('200')
    expect(ok.naturalWidth).toBe(64)
    expect(ok.cors).toEqual({ status: 200, type: 'image/png' })

    const refused = await load(other.origin)
    expect(refused.naturalWidth).toBe(0)
    // Chromium's opaque-response blocking (ORB) drops a JSON answer to an <img> before the page
    // or DevTools sees it (older versions showed the 403); so the server is asked again below.
    expect(['net::ERR_BLOCKED_BY_ORB', '403']).toContain(refused.outcome)
    const asked = await fetch(embedUrl, { headers: { Referer: `${other.origin}/` } })
    expect(asked.status).toBe(403)
    expect(await asked.json()).toMatchObject({
      type: 'https://edge-tti.dev/problems/embed-origin-not-allowed',
      status: 403,
    })
    // No Access-Control-Allow-Origin for it: the browser hides the answer from fetch too.
    expect(refused.cors).toMatchObject({ error: expect.stringMatching(/Failed to fetch/) })
  })
})

describe("the README's embedding examples", () => {
  let dir: string

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tti-readme-'))
    // `tti` on PATH, as `npm install -g` or `npx` would provide it.
    const bin = path.join(dir, 'bin')
    mkdirSync(bin)
    writeFileSync(
      path.join(bin, 'tti'),
      `#!/bin/sh\nexec "${process.execPath}" "${path.resolve('bin/tti.mjs')}" "$@"\n`,
    )
    chmodSync(path.join(bin, 'tti'), 0o755)
  })

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  /** The ```sh blocks of the README section "Embedding in static pages". */
  function readmeBlocks(): string[] {
    const readme = readFileSync('README.md', 'utf8')
    const section = readme.split('\n## Embedding in static pages\n')[1].split('\n## ')[0]
    return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1])
  }

  /** Runs a block with bash, the README's localhost:8787 pointed at the test worker. */
  function runBlock(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const body = script.replaceAll('http://localhost:8787', worker.url)
    return new Promise((resolve) =>
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', body],
        {
          cwd: dir,
          timeout: 120_000,
          env: { ...process.env, KEY: key, PATH: `${path.join(dir, 'bin')}:${process.env.PATH}` },
        },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      ),
    )
  }

  it('mints with curl and the CLI, then builds a URL map with prebuild and the batch call', async () => {
    const [mintBlock, batchBlock] = readmeBlocks()
    expect(mintBlock).toContain('curl -s $TTI_URL/v1/embeds')
    expect(batchBlock).toContain('tti prebuild prompts.json')

    // One shell session, as a reader pastes them: the second block uses the first's exports.
    const marker = '--- next block ---'
    const run = await runBlock(`${mintBlock}\necho '${marker}'\n${batchBlock}`)
    expect(run.stderr).not.toMatch(/tti: /)
    expect(run.code).toBe(0)
    const [mintOut, batchOut] = run.stdout.split(`${marker}\n`)
    const minted = { stdout: mintOut }
    // curl prints the JSON without a newline; the CLI's <img> follows it.
    const at = minted.stdout.lastIndexOf('<img ')
    const [json, html] = [minted.stdout.slice(0, at), minted.stdout.slice(at).trim()]
    const embed = JSON.parse(json)
    expect(embed).toMatchObject({ origins: ['http://localhost:8080'] })
    expect(embed.url).toMatch(new RegExp(`^${worker.url}/v1/embeds/[\\w-]+\\.[\\w-]{43}\\.png$`))
    // The CLI's URL (no expiry, so another payload) as a ready-to-paste <img> element.
    expect(html).toMatch(
      new RegExp(
        `^<img src="${worker.url}/v1/embeds/[\\w-]+\\.[\\w-]{43}\\.png" width="64" height="64" alt="a red circle">$`,
      ),
    )
    const shown = await fetch(embed.url, { headers: { Referer: 'http://localhost:8080/post' } })
    expect(shown.status).toBe(200)
    expect(shown.headers.get('content-type')).toBe('image/png')

    expect(run.stderr).toMatch(/2 of 2 images/)
    const urls = JSON.parse(readFileSync(path.join(dir, 'urls.json'), 'utf8'))
    expect(Object.keys(urls).sort()).toEqual(['hero', 'logo'])
    for (const url of Object.values(urls) as string[]) {
      expect(url).toMatch(new RegExp(`^${worker.url}/v1/images/[0-9a-f]{64}\\.png$`))
      expect((await fetch(url)).status).toBe(200)
    }
    // The curl batch asks for the same hero image: a cache hit at the same URL.
    const batch = JSON.parse(batchOut)
    expect(batch.images.hero).toMatchObject({ url: urls.hero, cached: true })
  })
})
