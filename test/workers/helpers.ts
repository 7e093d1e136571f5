/**
 * @module
 * Helpers for the Workers tests: requests against the real app (`SELF`), admin calls, keys,
 * problem assertions and /metrics reads.
 */
import { SELF } from 'cloudflare:test'
import { expect } from 'vitest'
import { installEngineProvider, type EngineProvider } from '../../src/engine/provider'
import type { TextToImageEngine } from '../../src/engine/types'
import { PROBLEM_TYPE_BASE, type ProblemSlug } from '../../src/problem'

let restoreEngine: (() => void) | undefined

/**
 * Wraps the installed engine's `generate` (to count, delay or fail calls; the model stays real)
 * until `unwrapGenerate`, which test files run in `afterEach`.
 */
export function wrapGenerate(
  wrap: (inner: TextToImageEngine['generate']) => TextToImageEngine['generate'],
): void {
  const previous: EngineProvider = installEngineProvider(async (e) => {
    const engine = await previous(e)
    return {
      models: () => engine.models(),
      tokenize: (model, text) => engine.tokenize(model, text),
      generate: wrap((req, opts) => engine.generate(req, opts)),
    }
  })!
  restoreEngine = () => installEngineProvider(previous)
}

/** Puts back the engine that `wrapGenerate` replaced (a no-op when nothing is wrapped). */
export function unwrapGenerate(): void {
  restoreEngine?.()
  restoreEngine = undefined
}

/** The ADMIN_TOKEN binding of vitest.config.mts. */
export const ADMIN_TOKEN = 'test-admin-token'

/** Requests a path of the app. */
export function call(path: string, init?: RequestInit): Promise<Response> {
  return SELF.fetch(`https://tti.test${path}`, init)
}

/** Requests a path with the admin token. */
export function admin(path: string, init: RequestInit = {}): Promise<Response> {
  return call(path, {
    ...init,
    headers: {
      Authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(init.headers as Record<string, string>),
    },
  })
}

/** Creates an API key through the admin API. */
export async function createKey(
  body: Record<string, unknown> = {},
): Promise<{ id: string; key: string; scopes: string[] }> {
  const res = await admin('/v1/keys', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
  expect(res.status).toBe(201)
  return res.json()
}

/** POSTs a JSON body to /v1/images with a key. */
export function postImages(
  key: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return call('/v1/images', {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(key ? { Authorization: `Bearer ${key}` } : {}),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** Asserts a problem+json response with `status` and the stable type of `slug`; returns the body. */
export async function expectProblem(
  res: Response,
  status: number,
  slug: ProblemSlug,
): Promise<Record<string, unknown>> {
  expect(res.headers.get('Content-Type')).toBe('application/problem+json')
  const body = (await res.json()) as Record<string, unknown>
  expect({ status: res.status, type: body.type, bodyStatus: body.status }).toEqual({
    status,
    type: PROBLEM_TYPE_BASE + slug,
    bodyStatus: status,
  })
  expect(typeof body.title).toBe('string')
  return body
}

/** Reads one unlabelled sample from /metrics. */
export async function metric(name: string): Promise<number> {
  const res = await admin('/metrics')
  expect(res.status).toBe(200)
  const text = await res.text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  if (!line) throw new Error(`metric ${name} not found in:\n${text}`)
  return Number(line.split(' ')[1])
}

/** Retries `check` until it stops throwing (for counters written after the response). */
export async function eventually(check: () => Promise<void>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  for (;;) {
    try {
      return await check()
    } catch (e) {
      if (Date.now() > end) throw e
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}
