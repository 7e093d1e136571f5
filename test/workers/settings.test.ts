/**
 * Deployment settings, through the worker's own `fetch` with an altered env: absolute URLs from
 * PUBLIC_ORIGIN whatever `Host` a request came with, and CACHE_SCOPE=key giving each API key its
 * own cache entries.
 */
import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import worker from '../../src/index'
import { createKey } from './helpers'

let key: string
beforeAll(async () => {
  key = (await createKey({ scopes: ['generate'] })).key
})

async function generate(
  host: string,
  extraEnv: Record<string, string>,
  as = key,
  seed = 91_001,
): Promise<string> {
  const res = await post(host, extraEnv, as, seed)
  return ((await res.json()) as { images: { url: string }[] }).images[0].url
}

async function post(host: string, extraEnv: Record<string, string>, as: string, seed: number) {
  const ctx = createExecutionContext()
  const res = await worker.fetch(
    new Request(`https://${host}/v1/images`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${as}`,
        'Content-Type': 'application/json',
        Accept: 'application/json',
      },
      body: JSON.stringify({ prompt: 'a red circle', seed, steps: 2 }),
    }),
    { ...env, ...extraEnv } as Env,
    ctx,
  )
  await waitOnExecutionContext(ctx)
  expect(res.status).toBe(200)
  return res
}

describe('PUBLIC_ORIGIN', () => {
  it('names the deployment in every image URL, not the Host of the request', async () => {
    const url = await generate('attacker.example', { PUBLIC_ORIGIN: 'https://tti.example.com' })
    expect(url).toMatch(/^https:\/\/tti\.example\.com\/v1\/images\/[0-9a-f]{64}\.png$/)
  })

  it('is the request URL when unset', async () => {
    const url = await generate('tti.test', {})
    expect(url).toMatch(/^https:\/\/tti\.test\/v1\/images\//)
  })
})

describe('CACHE_SCOPE', () => {
  it('key: another key asking the same is a miss (same bytes, same permanent URL)', async () => {
    const other = (await createKey({ scopes: ['generate'] })).key
    const scoped = { CACHE_SCOPE: 'key' }
    const first = await post('tti.test', scoped, key, 91_101)
    expect(first.headers.get('X-Cache')).toBe('MISS')
    const again = await post('tti.test', scoped, key, 91_101)
    expect(again.headers.get('X-Cache')).toBe('HIT')
    const elsewhere = await post('tti.test', scoped, other, 91_101)
    expect(elsewhere.headers.get('X-Cache')).toBe('MISS')
    const urls = await Promise.all([first, elsewhere].map(async (r) => (await r.json()) as any))
    expect(urls[0].images[0].url).toBe(urls[1].images[0].url)
  })

  it('shared (the default): one entry for everyone', async () => {
    const other = (await createKey({ scopes: ['generate'] })).key
    expect((await post('tti.test', {}, key, 91_201)).headers.get('X-Cache')).toBe('MISS')
    expect((await post('tti.test', {}, other, 91_201)).headers.get('X-Cache')).toBe('HIT')
  })
})
