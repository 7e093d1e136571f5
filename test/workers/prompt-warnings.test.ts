/**
 * `X-Prompt-Warnings` inside workerd on the bundled model, whose folder declares the words it was
 * trained on (`models/tiny-shapes/known_words.json`): words outside them are reported on every
 * kind of answer, hits as misses, and change neither the request key nor the image.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { sha256Hex } from '../../src/util'
import { call, createKey, expectProblem, postImages } from './helpers'

let key: string

beforeAll(async () => {
  key = (await createKey()).key
})

const warningsOf = (res: Response) => {
  const h = res.headers.get('X-Prompt-Warnings')
  return h === null ? null : JSON.parse(h)
}

describe('X-Prompt-Warnings', () => {
  it('names the words the bundled model never saw, on the JSON, PNG and event-stream answers', async () => {
    const body = {
      prompt: 'a cat on a red circle',
      negative_prompt: 'Blurry, cat',
      seed: 71,
      steps: 2,
    }
    const json = await postImages(key, body, { Accept: 'application/json' })
    expect(json.status).toBe(200)
    expect(json.headers.get('X-Cache')).toBe('MISS')
    const warnings = warningsOf(json)
    expect(warnings).toEqual([
      {
        type: 'unknown-words',
        field: 'prompt',
        words: ['cat'],
        detail: expect.stringContaining('model tiny-shapes was never trained on the word "cat"'),
      },
      {
        type: 'unknown-words',
        field: 'negative_prompt',
        words: ['blurry', 'cat'],
        detail: expect.stringContaining('the words "blurry", "cat"'),
      },
    ])
    const { images } = (await json.json()) as { images: { sha256: string }[] }

    // A hit says the same, with the same key: the warning is not part of it.
    const png = await postImages(key, body, { Accept: 'image/png' })
    expect(png.headers.get('X-Cache')).toBe('HIT')
    expect(png.headers.get('X-Request-Key')).toBe(json.headers.get('X-Request-Key'))
    expect(warningsOf(png)).toEqual(warnings)
    // The image is the one stored under its hash.
    expect(await sha256Hex(new Uint8Array(await png.arrayBuffer()))).toBe(images[0].sha256)

    const sse = await postImages(key, body, { Accept: 'text/event-stream' })
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/)
    expect(warningsOf(sse)).toEqual(warnings)
    expect(await sse.text()).toContain('event: done')
  })

  it('is absent when every word is known, and present on the 202 of a job', async () => {
    const known = await postImages(
      key,
      { prompt: 'A Large red circle, in the centre on a white background', seed: 72, steps: 2 },
      { Accept: 'application/json' },
    )
    expect(known.status).toBe(200)
    expect(known.headers.has('X-Prompt-Warnings')).toBe(false)

    const job = await postImages(
      key,
      { prompt: 'a red sunset', seed: 73, steps: 2 },
      { Accept: 'application/json', Prefer: 'respond-async' },
    )
    expect([200, 202]).toContain(job.status)
    expect(warningsOf(job)).toEqual([expect.objectContaining({ words: ['sunset'] })])
    await job.text()
  })

  it('keeps non-ASCII words readable in an ASCII header', async () => {
    const res = await postImages(
      key,
      { prompt: 'a red café circle', seed: 74, steps: 2 },
      { Accept: 'application/json' },
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('X-Prompt-Warnings')).toContain('caf\\u00e9')
    expect(warningsOf(res)[0].words).toEqual(['café'])
    await res.text()
  })

  it('lists the known words in GET /v1/models, and warns on the OpenAI route too', async () => {
    const models = await call('/v1/models', { headers: { Authorization: `Bearer ${key}` } })
    const [model] = ((await models.json()) as { models: { known_words?: string[] }[] }).models
    expect(model.known_words).toHaveLength(33)
    expect(model.known_words).toEqual(
      expect.arrayContaining(['circle', 'centre', 'center', 'tiny']),
    )
    expect(model.known_words).not.toContain('cat')

    const openai = await call('/v1/images/generations', {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'a fluffy red circle', size: '64x64' }),
    })
    expect(openai.status).toBe(200)
    expect(warningsOf(openai)).toEqual([expect.objectContaining({ words: ['fluffy'] })])
    await openai.text()
  })

  it('a refused request is answered by its problem alone', async () => {
    const refused = await postImages(key, { prompt: 'a cat', steps: 0 })
    await expectProblem(refused, 422, 'validation-error')
    expect(refused.headers.has('X-Prompt-Warnings')).toBe(false)
  })
})
