/**
 * @module
 * `npm run smoke`: starts `wrangler dev` on a free port with throwaway local state, creates a
 * key, generates an image (MISS), asks again (HIT, same bytes), fetches its permanent URL (same
 * bytes, then 304 with If-None-Match), and stops the server. Exits non-zero on any mismatch.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
    srv.on('error', reject)
  })
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`smoke: ${what}`)
  console.log(`ok  ${what}`)
}

async function main(): Promise<void> {
  const port = Number(process.env.SMOKE_PORT ?? (await freePort()))
  const base = `http://127.0.0.1:${port}`
  const token = randomBytes(24).toString('base64url')
  const state = mkdtempSync(path.join(tmpdir(), 'tti-smoke-'))
  const server = spawn(
    'npx',
    [
      'wrangler',
      'dev',
      '--port',
      String(port),
      '--ip',
      '127.0.0.1',
      '--persist-to',
      state,
      '--var',
      `ADMIN_TOKEN:${token}`,
      '--show-interactive-dev-session=false',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      // Its own dev registry: another `wrangler dev` of this worker elsewhere cannot reload it.
      env: {
        ...process.env,
        CI: '1',
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        WRANGLER_REGISTRY_PATH: path.join(state, 'registry'),
      },
    },
  )
  let log = ''
  server.stdout.on('data', (d) => (log += d))
  server.stderr.on('data', (d) => (log += d))
  const stop = () => {
    try {
      process.kill(-server.pid!, 'SIGTERM') // the whole group: npx, wrangler and workerd
    } catch {
      // already gone
    }
    rmSync(state, { recursive: true, force: true })
  }
  try {
    const deadline = Date.now() + 180_000
    for (;;) {
      if (server.exitCode !== null) throw new Error(`wrangler dev exited:\n${log}`)
      try {
        if ((await fetch(`${base}/healthz`)).ok) break
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`wrangler dev did not start:\n${log}`)
      await new Promise((r) => setTimeout(r, 500))
    }
    check(true, `wrangler dev is up on ${base}`)

    const admin = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }
    const created = await fetch(`${base}/v1/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'smoke' }),
    })
    check(created.status === 201, `POST /v1/keys → ${created.status}`)
    const { key } = (await created.json()) as { key: string }

    const generate = () =>
      fetch(`${base}/v1/images`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'a red circle on a white background', seed: 42, steps: 4 }),
      })
    const t0 = Date.now()
    const first = await generate()
    const firstBytes = Buffer.from(await first.arrayBuffer())
    check(
      first.status === 200 && first.headers.get('x-cache') === 'MISS',
      `POST /v1/images → ${first.status} X-Cache ${first.headers.get('x-cache')} (${firstBytes.length} bytes, ${Date.now() - t0} ms)`,
    )
    const second = await generate()
    const secondBytes = Buffer.from(await second.arrayBuffer())
    check(
      second.headers.get('x-cache') === 'HIT' && secondBytes.equals(firstBytes),
      `again → X-Cache ${second.headers.get('x-cache')}, identical bytes`,
    )
    const etag = first.headers.get('etag')!
    const url = `${base}${first.headers.get('content-location')}`
    const permanent = await fetch(url)
    const permanentBytes = Buffer.from(await permanent.arrayBuffer())
    check(permanent.status === 200 && permanentBytes.equals(firstBytes), `GET ${url} → same bytes`)
    const revalidated = await fetch(url, { headers: { 'If-None-Match': etag } })
    check(revalidated.status === 304, `If-None-Match ${etag} → ${revalidated.status}`)
    console.log('smoke: passed')
  } finally {
    stop()
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e)
  process.exit(1)
})
