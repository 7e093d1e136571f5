/**
 * Accepted jobs are durable and report back by webhook, through `wrangler dev` (the real worker,
 * miniflare's Queues, Durable Objects and their alarms, on a state folder kept between runs):
 * a job whose worker is stopped mid-run completes after the worker starts again, and its webhook
 * arrives signed per Standard Webhooks, checked with the `standardwebhooks` package as an
 * independent receiver would; a receiver that fails is retried with backoff under one
 * `webhook-id`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWorker, type RunningWorker } from './worker-server'

/** Vars of both workers: loopback webhook targets, a 2 s watchdog, 1 s retry bases. */
const VARS = {
  WEBHOOK_PRIVATE_TARGETS: 'allow',
  JOB_WATCHDOG_SECONDS: '2',
  JOB_RETRY_BASE_SECONDS: '1',
  WEBHOOK_RETRY_BASE_SECONDS: '1',
}

interface Delivery {
  at: number
  headers: IncomingHttpHeaders
  body: string
}

/** A webhook receiver on loopback: records every delivery, answers `statuses` in turn, then 204. */
async function receiver(statuses: number[] = []) {
  const deliveries: Delivery[] = []
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      deliveries.push({ at: Date.now(), headers: req.headers, body })
      res.writeHead(statuses.shift() ?? 204).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    deliveries,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/** POSTs a JSON image request to a worker with a key (JSON answers; `headers` add to them). */
function postImages(
  origin: string,
  key: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${origin}/v1/images`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/json',
      Accept: 'application/json',
      ...headers,
    },
    body: JSON.stringify(body),
  })
}

/** Polls until `check` passes or `ms` run out. */
async function until<T>(check: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Verifies a delivery as the receiver's library does; returns the payload. */
function verify(secret: string, d: Delivery) {
  const headers = {
    'webhook-id': String(d.headers['webhook-id']),
    'webhook-timestamp': String(d.headers['webhook-timestamp']),
    'webhook-signature': String(d.headers['webhook-signature']),
  }
  return new Webhook(secret).verify(d.body, headers) as {
    type: string
    data: { id: string; status: string; images?: { url: string; sha256: string }[] }
  }
}

describe('accepted jobs through a restart of the edge', () => {
  const state = mkdtempSync(path.join(tmpdir(), 'tti-jobs-state-'))
  const adminToken = 'jobs-durable-admin-token'
  let worker: RunningWorker | undefined
  afterAll(async () => {
    await worker?.stop()
    rmSync(state, { recursive: true, force: true })
  })

  it('completes a job whose worker was stopped mid-run, and delivers its signed webhook', async () => {
    const hooks = await receiver()
    try {
      worker = await startWorker(VARS, { state, adminToken })
      const { key, webhook_secret } = await worker.createKey({ name: 'durable' })
      const res = await postImages(
        worker.url,
        key,
        { prompt: 'a red circle', seed: 7001, steps: 100, webhook_url: hooks.url },
        { Prefer: 'respond-async' },
      )
      expect(res.status).toBe(202)
      const location = res.headers.get('Location')!
      const poll = async (base: string) =>
        (await (
          await fetch(base + location, { headers: { Authorization: `Bearer ${key}` } })
        ).json()) as { status: string; progress: { step: number } | null; images?: unknown[] }

      // Stop the edge once the job is denoising: its run dies with the runtime.
      const url = worker.url
      await until(async () => {
        const job = await poll(url)
        return job.status === 'running' && (job.progress?.step ?? 0) >= 1 ? job : undefined
      }, 60_000)
      await worker.stop()
      worker = undefined
      expect(hooks.deliveries).toEqual([])

      // The same state folder, a new runtime (and port): the job's record and watchdog remain.
      worker = await startWorker(VARS, { state, adminToken })
      const restarted = worker.url
      const done = await until(async () => {
        const job = await poll(restarted)
        expect(['queued', 'running', 'succeeded']).toContain(job.status)
        return job.status === 'succeeded' ? job : undefined
      }, 90_000)
      expect(done.images).toHaveLength(1)

      const delivery = await until(async () => hooks.deliveries[0], 30_000)
      const event = verify(webhook_secret, delivery)
      expect(event.type).toBe('image.job.succeeded')
      expect(event.data).toMatchObject({ id: location.split('/').pop(), status: 'succeeded' })
      expect(event.data.images!.map((i) => i.sha256)).toEqual(
        (done.images as { sha256: string }[]).map((i) => i.sha256),
      )
      // A tampered body or another secret does not verify.
      expect(() => verify(webhook_secret, { ...delivery, body: delivery.body + ' ' })).toThrow()
      const { webhook_secret: other } = await worker.createKey()
      expect(() => verify(other, delivery)).toThrow()
    } finally {
      await hooks.close()
    }
  })
})

describe('webhook deliveries', () => {
  let worker: RunningWorker
  beforeAll(async () => {
    worker = await startWorker(VARS)
  })
  afterAll(() => worker.stop())

  /** POSTs a respond-async request with a webhook. */
  function accept(key: string, body: Record<string, unknown>) {
    return postImages(worker.url, key, body, { Prefer: 'respond-async' })
  }

  it('retries a failing receiver with doubling delays under one webhook-id', async () => {
    const hooks = await receiver([500, 503])
    try {
      const { key, webhook_secret } = await worker.createKey()
      const res = await accept(key, {
        prompt: 'a blue square',
        seed: 7002,
        steps: 2,
        webhook_url: hooks.url,
      })
      expect(res.status).toBe(202)
      await until(async () => (hooks.deliveries.length >= 3 ? true : undefined), 30_000)
      const [a, b, c] = hooks.deliveries
      for (const d of [a, b, c]) expect(verify(webhook_secret, d).type).toBe('image.job.succeeded')
      expect(new Set([a, b, c].map((d) => d.headers['webhook-id'])).size).toBe(1)
      // WEBHOOK_RETRY_BASE_SECONDS is 1: about 1 s, then 2 s.
      expect(b.at - a.at).toBeGreaterThanOrEqual(900)
      expect(c.at - b.at).toBeGreaterThanOrEqual(1900)
      await new Promise((r) => setTimeout(r, 1500))
      expect(hooks.deliveries).toHaveLength(3) // acknowledged: never sent again
    } finally {
      await hooks.close()
    }
  })

  it('delivers at once for a cache hit, and refuses bad targets and webhooks without respond-async', async () => {
    const hooks = await receiver()
    try {
      const { key, webhook_secret } = await worker.createKey()
      const body = { prompt: 'a green circle', seed: 7003, steps: 2 }
      const first = await postImages(worker.url, key, body)
      expect(first.status).toBe(200)
      const hit = await accept(key, { ...body, webhook_url: hooks.url })
      expect(hit.status).toBe(200)
      const d = await until(async () => hooks.deliveries[0], 15_000)
      expect(verify(webhook_secret, d).data.status).toBe('succeeded')

      for (const [extra, headers, detail] of [
        [
          { webhook_url: 'ftp://example.com/x' },
          { Prefer: 'respond-async' },
          'must be an http(s) URL',
        ],
        [{ webhook_url: hooks.url }, {}, 'needs Prefer: respond-async'],
      ] as const) {
        const res = await postImages(worker.url, key, { ...body, seed: 7004, ...extra }, headers)
        expect(res.status).toBe(422)
        const problem = (await res.json()) as { errors: { field: string; detail: string }[] }
        expect(problem.errors).toEqual([{ field: 'webhook_url', detail }])
      }
    } finally {
      await hooks.close()
    }
  })
})
