/**
 * Every error status of the API, each as RFC 9457 problem+json with its stable `type`.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { call, createKey, expectProblem, postImages } from './helpers'

let key: string
let model: { id: string; max_prompt_tokens: number; limits: Record<string, number> }

beforeAll(async () => {
  key = (await createKey({ name: 'errors' })).key
  const res = await call('/v1/models', { headers: { Authorization: `Bearer ${key}` } })
  model = ((await res.json()) as { models: (typeof model)[] }).models[0]
})

describe('request body', () => {
  it('415 for a non-JSON content type', async () => {
    const res = await postImages(key, 'prompt=x', { 'Content-Type': 'text/plain' })
    await expectProblem(res, 415, 'unsupported-media-type')
  })

  it('413 for a body without pictures over 8 KiB', async () => {
    const body = JSON.stringify({ prompt: 'x'.repeat(9000) })
    const res = await postImages(key, body)
    const problem = await expectProblem(res, 413, 'payload-too-large')
    expect(problem.limit).toBe(8192)
  })

  it('413 when a streamed body without Content-Length passes 8 KiB and holds no picture', async () => {
    const chunk = new TextEncoder().encode('y'.repeat(4000))
    let sent = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 3) controller.enqueue(chunk)
        else controller.close()
      },
    })
    const res = await call('/v1/images', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
      body: stream,
    })
    await expectProblem(res, 413, 'payload-too-large')
  })

  it('400 for malformed JSON', async () => {
    await expectProblem(await postImages(key, '{"prompt": '), 400, 'malformed-request')
  })
})

describe('validation (422 naming the field)', () => {
  const fieldOf = async (body: unknown) => {
    const problem = await expectProblem(await postImages(key, body), 422, 'validation-error')
    return (problem.errors as { field: string }[]).map((e) => e.field)
  }

  it('a scheduler constraint is a 422 on steps, not a retryable generation failure', async () => {
    // The bundled model's config leaves PNDM's Runge–Kutta warm-up on: it needs 4 steps.
    const problem = await expectProblem(
      await postImages(key, { prompt: 'a red circle', scheduler: 'PNDMScheduler', steps: 3 }),
      422,
      'validation-error',
    )
    expect(problem.errors).toEqual([
      { field: 'steps', detail: expect.stringContaining('needs at least 4 steps') },
    ])
  })

  it('rejects unknown fields', async () => {
    expect(await fieldOf({ prompt: 'a cat', cfg: 7 })).toEqual(['cfg'])
  })

  it('requires a string prompt', async () => {
    expect(await fieldOf({})).toEqual(['prompt'])
    expect(await fieldOf({ prompt: 42 })).toEqual(['prompt'])
  })

  it('bounds prompts in characters before tokenizing them (a long word costs quadratic BPE time)', async () => {
    const word = 'a'.repeat(2001)
    expect(await fieldOf({ prompt: word, truncate: true })).toEqual(['prompt'])
    expect(await fieldOf({ prompt: 'a cat', negative_prompt: word })).toEqual(['negative_prompt'])
    expect(await fieldOf({ prompt: 'a'.repeat(2000), truncate: true, steps: 0 })).toEqual(['steps'])
  })

  it('bounds width and height by the model size multiple and maximum', async () => {
    const { size_multiple: m, max_width: maxW } = model.limits
    expect(await fieldOf({ prompt: 'a', width: m + 1 })).toEqual(['width'])
    expect(await fieldOf({ prompt: 'a', height: maxW + m })).toEqual(['height'])
    expect(await fieldOf({ prompt: 'a', width: 0 })).toEqual(['width'])
  })

  it('bounds steps, guidance_scale, n and seed', async () => {
    const l = model.limits
    expect(await fieldOf({ prompt: 'a', steps: l.max_steps + 1 })).toEqual(['steps'])
    expect(await fieldOf({ prompt: 'a', steps: 2.5 })).toEqual(['steps'])
    expect(await fieldOf({ prompt: 'a', guidance_scale: l.max_guidance_scale + 1 })).toEqual([
      'guidance_scale',
    ])
    expect(await fieldOf({ prompt: 'a', n: l.max_images + 1 })).toEqual(['n'])
    expect(await fieldOf({ prompt: 'a', seed: -1 })).toEqual(['seed'])
    expect(await fieldOf({ prompt: 'a', seed: 2 ** 32 })).toEqual(['seed'])
    expect(await fieldOf({ prompt: 'a', seed: 1.5 })).toEqual(['seed'])
  })

  it('rejects unknown models, schedulers and output formats', async () => {
    expect(await fieldOf({ prompt: 'a', model: 'nope' })).toEqual(['model'])
    expect(await fieldOf({ prompt: 'a', scheduler: 'nope' })).toEqual(['scheduler'])
    expect(await fieldOf({ prompt: 'a', output_format: 'gif' })).toEqual(['output_format'])
    expect(await fieldOf({ prompt: 'a', truncate: 'yes' })).toEqual(['truncate'])
  })

  it('422 prompt-too-long names the token limit unless truncate is set', async () => {
    const prompt = 'cat '.repeat(model.max_prompt_tokens + 5)
    const problem = await expectProblem(await postImages(key, { prompt }), 422, 'prompt-too-long')
    expect(problem.limit).toBe(model.max_prompt_tokens)
    expect(problem.field).toBe('prompt')
    expect(problem.detail).toContain(String(model.max_prompt_tokens))
  })
})

describe('other statuses', () => {
  it('404 for unknown routes and unknown images', async () => {
    await expectProblem(await call('/nope'), 404, 'not-found')
    await expectProblem(await call(`/v1/images/${'0'.repeat(64)}.png`), 404, 'not-found')
    await expectProblem(await call('/v1/images/not-a-hash.png'), 404, 'not-found')
  })

  it('406 when neither PNG nor JSON is acceptable, or PNG for n > 1', async () => {
    const res = await postImages(key, { prompt: 'a', seed: 1 }, { Accept: 'text/html' })
    await expectProblem(res, 406, 'not-acceptable')
    const many = await postImages(key, { prompt: 'a', seed: 1, n: 2 }, { Accept: 'image/png' })
    await expectProblem(many, 406, 'not-acceptable')
  })

  it('401 for admin endpoints without the admin token', async () => {
    await expectProblem(await call('/v1/keys'), 401, 'unauthorized')
    await expectProblem(await call('/metrics'), 401, 'unauthorized')
    const wrong = await call('/metrics', { headers: { Authorization: 'Bearer not-the-token' } })
    await expectProblem(wrong, 401, 'unauthorized')
  })

  it('422 for invalid key creation input', async () => {
    const res = await call('/v1/keys', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer test-admin-token' },
      body: JSON.stringify({ scopes: ['admin'] }),
    })
    const problem = await expectProblem(res, 422, 'validation-error')
    expect(problem.errors).toEqual([expect.objectContaining({ field: 'scopes' })])
  })

  it('404 when revoking an unknown key', async () => {
    const res = await call('/v1/keys/0123456789abcdef', {
      method: 'DELETE',
      headers: { Authorization: 'Bearer test-admin-token' },
    })
    await expectProblem(res, 404, 'not-found')
  })
})
