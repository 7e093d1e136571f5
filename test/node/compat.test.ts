/**
 * The drop-in compatibility routes against the real worker, driven by the real clients: the
 * `openai` npm package (`images.generate` with `baseURL`) and `@huggingface/inference`
 * (`textToImage` with `endpointUrl`). Both must land on the same cache entries as POST /v1/images.
 */
import { createHash } from 'node:crypto'
import {
  InferenceClient,
  InferenceClientProviderApiError,
  textToImage,
} from '@huggingface/inference'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWorker, type RunningWorker } from './worker-server'

let worker: RunningWorker
let key: string

beforeAll(async () => {
  worker = await startWorker()
  key = (await worker.createKey({ name: 'compat-test' })).key
})

afterAll(async () => {
  await worker?.stop()
})

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** POST /v1/images (JSON) with the native field names, for cross-checking cache entries. */
async function native(body: Record<string, unknown>) {
  const res = await fetch(`${worker.url}/v1/images`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/json',
      Accept: 'application/json',
    },
    body: JSON.stringify(body),
  })
  expect(res.status).toBe(200)
  return (await res.json()) as { images: { sha256: string; url: string }[]; cached: boolean }
}

describe('OpenAI Images API (openai npm client)', () => {
  const openai = () => new OpenAI({ apiKey: key, baseURL: `${worker.url}/v1`, maxRetries: 0 })

  it('b64_json: the PNG inline, the same bytes POST /v1/images stores', async () => {
    const res = await openai().images.generate({
      prompt: 'a green triangle',
      size: '64x64',
      n: 1,
      response_format: 'b64_json',
      // Native parameters ride along as extra body fields.
      ...{ seed: 11, steps: 2 },
    })
    expect(res.created).toBeGreaterThan(1_700_000_000)
    expect(res.data).toHaveLength(1)
    const png = Buffer.from(res.data![0].b64_json!, 'base64')
    expect(png.subarray(1, 4).toString()).toBe('PNG')

    const again = await native({ prompt: 'a green triangle', seed: 11, steps: 2 })
    expect(again.cached).toBe(true)
    expect(again.images[0].sha256).toBe(sha256(png))
  })

  it('url (the default): permanent URLs, one per image with n > 1', async () => {
    const res = await openai().images.generate({
      prompt: 'two circles',
      size: 'auto',
      n: 2,
      quality: 'hd',
      style: 'natural',
      user: 'someone',
      ...{ seed: 5, steps: 1 },
    })
    expect(res.data).toHaveLength(2)
    for (const d of res.data!) {
      expect(d.url).toMatch(new RegExp(`^${worker.url}/v1/images/[0-9a-f]{64}\\.png$`))
      const png = new Uint8Array(await (await fetch(d.url!)).arrayBuffer())
      expect(d.url).toContain(sha256(png))
    }
  })

  it('errors: the SDK error classes by status, with OpenAI-shaped bodies', async () => {
    const bad = await openai()
      .images.generate({ prompt: 'x', size: '64by64' })
      .catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(OpenAI.UnprocessableEntityError)
    expect(bad).toMatchObject({
      status: 422,
      param: 'size',
      code: 'validation-error',
      type: 'invalid_request_error',
    })

    const tooBig = await openai()
      .images.generate({ prompt: 'x', size: '4096x4096' })
      .catch((e: unknown) => e)
    expect(tooBig).toMatchObject({ status: 422, param: 'size' })
    expect((tooBig as Error).message).toMatch(/size: must be between/)

    const anon = new OpenAI({
      apiKey: 'tti_' + 'B'.repeat(43),
      baseURL: `${worker.url}/v1`,
      maxRetries: 0,
    })
    const unauthorized = await anon.images.generate({ prompt: 'x' }).catch((e: unknown) => e)
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(unauthorized).toMatchObject({ status: 401, code: 'unauthorized' })
  })

  it('429 surfaces as RateLimitError with Retry-After', async () => {
    const { key: tight } = await worker.createKey({
      rate_limit: { burst: 1, period_seconds: 3600 },
    })
    const client = new OpenAI({ apiKey: tight, baseURL: `${worker.url}/v1`, maxRetries: 0 })
    await client.images.generate({ prompt: 'a dot', ...{ seed: 100, steps: 1 } })
    const limited = await client.images
      .generate({ prompt: 'a dot', ...{ seed: 101, steps: 1 } })
      .catch((e: unknown) => e)
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect(
      Number((limited as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')),
    ).toBeGreaterThan(0)
  })
})

describe('Hugging Face text-to-image (@huggingface/inference)', () => {
  const parameters = {
    negative_prompt: 'blurry',
    guidance_scale: 6,
    num_inference_steps: 2,
    width: 64,
    height: 64,
    seed: 21,
  }

  it('textToImage with endpointUrl returns the PNG of the native request', async () => {
    const blob = await textToImage(
      {
        endpointUrl: `${worker.url}/v1/hf/text-to-image`,
        accessToken: key,
        inputs: 'a yellow star',
        parameters,
      },
      { outputType: 'blob' },
    )
    const png = new Uint8Array(await blob.arrayBuffer())
    expect(Buffer.from(png.subarray(1, 4)).toString()).toBe('PNG')

    const again = await native({
      prompt: 'a yellow star',
      negative_prompt: 'blurry',
      guidance_scale: 6,
      steps: 2,
      width: 64,
      height: 64,
      seed: 21,
    })
    expect(again.cached).toBe(true)
    expect(again.images[0].sha256).toBe(sha256(png))
  })

  it('InferenceClient.endpoint on /v1/hf/models/<id> picks that model', async () => {
    const [{ id }] = (
      (await (
        await fetch(`${worker.url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } })
      ).json()) as { models: { id: string }[] }
    ).models
    const hf = new InferenceClient(key).endpoint(`${worker.url}/v1/hf/models/${id}`)
    const blob = await hf.textToImage(
      {
        inputs: 'a yellow star',
        parameters: {
          target_size: { width: 64, height: 64 },
          scheduler: 'euler',
          num_inference_steps: 2,
          seed: 3,
        },
      },
      { outputType: 'blob' },
    )
    const png = new Uint8Array(await blob.arrayBuffer())
    const same = await native({
      prompt: 'a yellow star',
      model: id,
      scheduler: 'euler',
      steps: 2,
      seed: 3,
      width: 64,
      height: 64,
    })
    expect(same.cached).toBe(true)
    expect(same.images[0].sha256).toBe(sha256(png))

    const unknown = new InferenceClient(key).endpoint(`${worker.url}/v1/hf/models/no-such-model`)
    const err = await unknown.textToImage({ inputs: 'x' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InferenceClientProviderApiError)
    expect((err as Error).message).toMatch(/model: must be one of/)
  })

  it('invalid parameters are named as the caller sent them', async () => {
    const err = await textToImage({
      endpointUrl: `${worker.url}/v1/hf/text-to-image`,
      accessToken: key,
      inputs: 'x',
      parameters: { num_inference_steps: 0 },
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InferenceClientProviderApiError)
    expect((err as InferenceClientProviderApiError).httpResponse.status).toBe(422)
    expect((err as Error).message).toMatch(/parameters\.num_inference_steps: must be between/)
  })
})
