/**
 * The compatibility translations as pure functions: OpenAI and Hugging Face bodies to the
 * native POST /v1/images body, and validation errors renamed to the caller's field names.
 */
import { describe, expect, it } from 'vitest'
import { fromHuggingFace, fromOpenAI, withCallerFieldNames } from '../../src/compat/translate'
import { ProblemError, throwFieldErrors } from '../../src/problem'

/** The `errors` of the validation problem `fn` throws. */
function fieldErrors(fn: () => unknown): unknown {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(ProblemError)
    expect((e as ProblemError).slug).toBe('validation-error')
    return (e as ProblemError).extensions.errors
  }
  throw new Error('expected a validation error')
}

describe('fromOpenAI', () => {
  it('maps size, takes out response_format, drops the ignored fields, keeps native ones', () => {
    const t = fromOpenAI({
      prompt: 'p',
      size: '48x32',
      n: 2,
      response_format: 'b64_json',
      quality: 'hd',
      style: 'vivid',
      user: 'u',
      moderation: 'low',
      seed: 3,
      model: 'm',
    })
    expect(t.body).toEqual({ prompt: 'p', width: 48, height: 32, n: 2, seed: 3, model: 'm' })
    expect(t.extra.responseFormat).toBe('b64_json')
    expect(fromOpenAI({ prompt: 'p', size: 'auto' }).body).toEqual({ prompt: 'p' })
    expect(fromOpenAI({ prompt: 'p' }).extra.responseFormat).toBe('url')
  })

  it('rejects a malformed size and an unknown response_format, naming both', () => {
    expect(
      fieldErrors(() => fromOpenAI({ prompt: 'p', size: 64, response_format: 'jpg' })),
    ).toEqual([
      { field: 'response_format', detail: 'must be "url" or "b64_json"' },
      { field: 'size', detail: 'must be "WIDTHxHEIGHT", e.g. "64x64"' },
    ])
  })

  it('leaves a non-object body for createImages to reject', () => {
    expect(fromOpenAI('nope').body).toBe('nope')
  })
})

describe('fromHuggingFace', () => {
  it('maps inputs and parameters; target_size sets width and height; the URL names the model', () => {
    const t = fromHuggingFace(
      {
        inputs: 'p',
        parameters: {
          negative_prompt: 'n',
          guidance_scale: 5,
          num_inference_steps: 3,
          target_size: { width: 32, height: 48 },
          seed: 9,
          scheduler: 'ddim',
        },
      },
      'tiny',
    )
    expect(t.body).toEqual({
      prompt: 'p',
      model: 'tiny',
      negative_prompt: 'n',
      guidance_scale: 5,
      steps: 3,
      width: 32,
      height: 48,
      seed: 9,
      scheduler: 'ddim',
    })
  })

  it('names unknown fields and parameters as sent', () => {
    expect(
      fieldErrors(() => fromHuggingFace({ inputs: 'p', extra: 1, parameters: { eta: 0 } })),
    ).toEqual([
      { field: 'extra', detail: 'unknown field' },
      { field: 'parameters.eta', detail: 'unknown parameter' },
    ])
  })

  it("does not take Object.prototype's members for parameters", () => {
    expect(
      fieldErrors(() =>
        fromHuggingFace({ inputs: 'p', parameters: { constructor: 1, toString: 2 } }),
      ),
    ).toEqual([
      { field: 'parameters.constructor', detail: 'unknown parameter' },
      { field: 'parameters.toString', detail: 'unknown parameter' },
    ])
  })
})

describe('withCallerFieldNames', () => {
  it("renames a validation error's fields and leaves other errors alone", async () => {
    const { fieldNames } = fromHuggingFace({ inputs: 'p' })
    const renamed = await withCallerFieldNames(fieldNames, async () =>
      throwFieldErrors([{ field: 'steps', detail: 'must be between 1 and 100' }]),
    ).catch((e: ProblemError) => e)
    expect(renamed.extensions.errors).toEqual([
      { field: 'parameters.num_inference_steps', detail: 'must be between 1 and 100' },
    ])
    expect(renamed.detail).toBe('parameters.num_inference_steps: must be between 1 and 100')

    const other = new ProblemError('rate-limited')
    await expect(
      withCallerFieldNames(fieldNames, async () => {
        throw other
      }),
    ).rejects.toBe(other)
  })
})

describe('withCallerFieldNames', () => {
  it('reports a problem of two native fields that share a caller field once', async () => {
    const err = await withCallerFieldNames({ width: 'size', height: 'size' }, async () =>
      throwFieldErrors([
        { field: 'width', detail: 'must be between 16 and 64' },
        { field: 'height', detail: 'must be between 16 and 64' },
      ]),
    ).catch((e: unknown) => e)
    expect((err as ProblemError).extensions.errors).toEqual([
      { field: 'size', detail: 'must be between 16 and 64' },
    ])
  })
})
