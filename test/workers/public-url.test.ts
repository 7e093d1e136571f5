/**
 * Absolute URLs in answers: from the configured PUBLIC_ORIGIN when set, whatever `Host` the
 * request came with; from the request's URL otherwise.
 */
import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import worker from '../../src/index'
import { createKey } from './helpers'

let key: string
beforeAll(async () => {
  key = (await createKey({ scopes: ['generate'] })).key
})

async function generate(host: string, extraEnv: Record<string, string>) {
  const ctx = createExecutionContext()
  const res = await worker.fetch(
    new Request(`https://${host}/v1/images`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        Accept: 'application/json',
      },
      body: JSON.stringify({ prompt: 'a red circle', seed: 91_001, steps: 2 }),
    }),
    { ...env, ...extraEnv } as Env,
    ctx,
  )
  await waitOnExecutionContext(ctx)
  expect(res.status).toBe(200)
  return ((await res.json()) as { images: { url: string }[] }).images[0].url
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
