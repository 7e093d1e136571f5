/**
 * @module
 * Starts the real worker (`wrangler.toml`, the bundled model, local KV/R2/Durable Objects) with
 * wrangler's programmatic API on a free port, with its state in a fresh temp folder and a random
 * `ADMIN_TOKEN`, for Node-side tests that talk to it over HTTP as users' clients do.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { unstable_startWorker } from 'wrangler'

/** A running worker: its origin, admin token, a key maker and `stop`. */
export interface RunningWorker {
  /** Origin without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string
  adminToken: string
  /** Creates an API key through the admin API; returns the key, its id and webhook secret. */
  createKey(
    body?: Record<string, unknown>,
  ): Promise<{ id: string; key: string; webhook_secret: string }>
  stop(): Promise<void>
}

// The app never reads `request.cf`: skip miniflare's download of its real values (a stack trace
// of ENOTFOUND on every start where the machine is offline), as `npm start` does.
process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= 'false'
// This process's workers keep a dev registry of their own: another `wrangler dev` of this worker
// starting or stopping elsewhere (a parallel test) otherwise reloads them mid-request.
process.env.WRANGLER_REGISTRY_PATH ??= mkdtempSync(path.join(tmpdir(), 'tti-registry-'))

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
    srv.on('error', reject)
  })
}

/**
 * Starts the worker with extra plain-text `vars` (and, with `assets`, another model folder in
 * place of models/; with `config`, another worker; with `inspectorPort`, DevTools there, as the
 * memory benchmark reads it); `stop()` disposes of it and deletes its state. With `state` (a
 * folder, and the `adminToken` it was started with) it keeps its state there instead, so a
 * worker started again on it finds its KV, R2 and Durable Objects, as a restarted edge would.
 * Files are not watched: an edit during a run never restarts it.
 */
export async function startWorker(
  vars: Record<string, string> = {},
  options: {
    assets?: string
    config?: string
    inspectorPort?: number
    state?: string
    adminToken?: string
  } = {},
): Promise<RunningWorker> {
  const port = await freePort()
  const adminToken = options.adminToken ?? randomBytes(24).toString('base64url')
  const state = options.state ?? mkdtempSync(path.join(tmpdir(), 'tti-worker-'))
  const worker = await unstable_startWorker({
    config: options.config ?? 'wrangler.toml',
    ...(options.assets ? { assets: options.assets } : {}),
    bindings: {
      ADMIN_TOKEN: { type: 'plain_text', value: adminToken },
      ...Object.fromEntries(
        Object.entries(vars).map(([k, value]) => [k, { type: 'plain_text' as const, value }]),
      ),
    },
    dev: {
      server: { hostname: '127.0.0.1', port },
      inspector: options.inspectorPort
        ? { hostname: '127.0.0.1', port: options.inspectorPort }
        : false,
      persist: state,
      watch: false,
      logLevel: 'warn',
    },
  })
  await worker.ready
  const url = `http://127.0.0.1:${port}`
  return {
    url,
    adminToken,
    async createKey(body = {}) {
      const res = await fetch(`${url}/v1/keys`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      })
      if (res.status !== 201) throw new Error(`POST /v1/keys → ${res.status} ${await res.text()}`)
      return res.json() as Promise<{ id: string; key: string; webhook_secret: string }>
    },
    async stop() {
      await worker.dispose()
      if (!options.state) rmSync(state, { recursive: true, force: true })
    },
  }
}
