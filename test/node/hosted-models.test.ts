/**
 * The hosted-provider configuration and engine without the worker: config validation, the byte
 * measure of prompts, model identities, and the failures that need no provider answer (an
 * unreachable provider, a caller abort) with the real `@huggingface/inference` client in Node.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { createHostedEngine } from '../../src/engine/hosted-engine'
import {
  DEFAULT_HOSTED_PROVIDER,
  HOSTED_PROMPT_BYTES,
  hostedConfig,
  promptBytes,
} from '../../src/engine/hosted-models'
import { BackendError, failureOf } from '../../src/engine/errors'
import { freePort } from './worker-server'

const BASE = { HF_TOKEN: 'hf_test', HF_MODELS: 'stabilityai/sd-turbo' }

describe('hostedConfig', () => {
  it('is off without a token and defaults to one fixed provider', () => {
    expect(hostedConfig({ HF_MODELS: 'stabilityai/sd-turbo' })).toBeUndefined()
    expect(hostedConfig({ ...BASE, HF_TOKEN: '  ' })).toBeUndefined()
    const c = hostedConfig({
      ...BASE,
      HF_MODELS: ' stabilityai/sd-turbo , black-forest-labs/FLUX.1-schnell ',
    })!
    expect(c).toMatchObject({
      token: 'hf_test',
      models: ['stabilityai/sd-turbo', 'black-forest-labs/FLUX.1-schnell'],
      provider: DEFAULT_HOSTED_PROVIDER,
      endpointUrl: undefined,
      timeoutMs: 120_000,
    })
    expect(c.key).not.toContain('hf_test')
  })

  it('refuses configurations that cannot work or would key the cache wrongly', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ HF_TOKEN: 'hf_test' }, /names no model/],
      [{ ...BASE, HF_MODELS: 'not a model id' }, /invalid model id/],
      [{ ...BASE, HF_PROVIDER: 'auto' }, /not "auto"/],
      [{ ...BASE, HF_PROVIDER: 'fal-ai', HF_ENDPOINT_URL: 'https://e.example' }, /not both/],
      [{ ...BASE, HF_ENDPOINT_URL: 'ftp://e.example' }, /http\(s\)/],
      [{ ...BASE, HF_MODELS: 'a/b,c/d', HF_ENDPOINT_URL: 'https://e.example' }, /one model/],
      [{ ...BASE, HF_TIMEOUT_MS: 'soon' }, /positive number/],
    ]
    for (const [env, message] of cases) expect(() => hostedConfig(env)).toThrow(message)
  })
})

describe('promptBytes', () => {
  it('keeps short prompts and cuts long ones at a character boundary', () => {
    expect(promptBytes('a fox')).toMatchObject({ text: 'a fox', nBytes: 5 })
    const long = promptBytes('€'.repeat(400)) // 3 bytes each: 1200 bytes
    expect(long.nBytes).toBe(1200)
    expect(long.text).toBe('€'.repeat(333))
    expect(long.bytes.length).toBe(999)
    expect(promptBytes('x'.repeat(HOSTED_PROMPT_BYTES)).text.length).toBe(HOSTED_PROMPT_BYTES)
  })
})

describe('createHostedEngine', () => {
  const servers: Server[] = []
  afterAll(() => servers.forEach((s) => (s.closeAllConnections(), s.close())))

  it('rejects a provider the client does not know', async () => {
    await expect(
      createHostedEngine(hostedConfig({ ...BASE, HF_PROVIDER: 'no-such-provider' })!),
    ).rejects.toThrow(/HF_PROVIDER "no-such-provider" is not one of/)
  })

  it('gives each provider/endpoint/model its own digest and keys prompts by their bytes', async () => {
    const viaProvider = await createHostedEngine(hostedConfig(BASE)!)
    const viaOther = await createHostedEngine(hostedConfig({ ...BASE, HF_PROVIDER: 'fal-ai' })!)
    const viaEndpoint = await createHostedEngine(
      hostedConfig({ ...BASE, HF_ENDPOINT_URL: 'https://e.example' })!,
    )
    const [a, b, c] = [viaProvider, viaOther, viaEndpoint].map((e) => e.models()[0])
    expect([a.id, b.id, c.id]).toEqual(Array(3).fill('hf:stabilityai/sd-turbo'))
    expect(new Set([a.digest, b.digest, c.digest]).size).toBe(3)

    const t = viaProvider.tokenize('hf:stabilityai/sd-turbo', 'né')
    expect(t).toEqual({ inputIds: [0x6e, 0xc3, 0xa9], nTokens: 3, truncated: false })
    expect(viaProvider.tokenize('hf:stabilityai/sd-turbo', 'x'.repeat(1001))).toMatchObject({
      nTokens: 1001,
      truncated: true,
    })
    expect(() => viaProvider.tokenize('tiny-shapes', 'x')).toThrow(RangeError)
  })

  const request = {
    model: 'hf:stabilityai/sd-turbo',
    prompt: 'a fox',
    negativePrompt: '',
    seed: 1,
    steps: 1,
    guidanceScale: 0,
    width: 512,
    height: 512,
    scheduler: 'default',
    n: 1,
    truncate: false,
    options: {},
  }

  it('reports an unreachable provider as 503', async () => {
    const port = await freePort() // closed again: nothing listens there
    const engine = await createHostedEngine(
      hostedConfig({ ...BASE, HF_ENDPOINT_URL: `http://127.0.0.1:${port}/x` })!,
    )
    const error = await engine.generate(request).catch((e) => e)
    expect(error).toBeInstanceOf(BackendError)
    expect(failureOf(error).status).toBe(503)
  })

  it("passes a caller's abort through instead of calling it a provider failure", async () => {
    let calls = 0
    const server = createServer(() => void calls++) // never answers
    servers.push(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const engine = await createHostedEngine(
      hostedConfig({
        ...BASE,
        HF_ENDPOINT_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`,
      })!,
    )
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('client went away')), 200)
    const error = await engine.generate(request, { signal: controller.signal }).catch((e) => e)
    expect(error).not.toBeInstanceOf(BackendError)
    expect((error as Error).message).toBe('client went away')
    expect(calls).toBe(1)
  })
})
