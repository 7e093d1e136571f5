/**
 * @module
 * `imageBody`: the body of an image request, as `application/json` or `multipart/form-data`
 * (pictures as file parts, as OpenAI's and most image APIs take uploads), into `c.var.json` as
 * one plain object. The byte limit (413) covers the text fields plus the picture fields' upload
 * limit; multipart text fields are typed by the request schema (`"4"` is a number for `steps`,
 * never for `prompt`), so both forms validate the same way.
 */
import { createMiddleware } from 'hono/factory'
// A namespace import lets esbuild drop the zod exports (locales…) nobody uses.
import * as z from 'zod'
import type { AppEnv } from '../app-env'
import { ProblemError } from '../problem'
import { readCapped } from '../util'

/** The bare picture bodies `rawPicture` accepts. */
const RAW_PICTURE_TYPES: readonly string[] = Object.freeze(['image/png', 'image/jpeg'])

/** The content types an image request may have. */
export const IMAGE_BODY_TYPES = Object.freeze(['application/json', 'multipart/form-data'] as const)

/**
 * Reads a bounded JSON or multipart body. `maxBytes` bounds a body without pictures; each
 * picture field may add `maxPictureBytes` (as base64, 4/3 of it, in JSON).
 */
export function imageBody(options: {
  maxBytes: number
  maxPictureBytes: number
  /** The picture fields; each may add `maxPictureBytes`. */
  pictures: readonly string[]
  /** The request schema: its string fields stay strings in multipart. */
  schema: z.ZodObject
  /**
   * Also take a bare PNG or JPEG body (`image/png`, `image/jpeg`), as this field of an
   * otherwise empty object (the Hugging Face clients send a picture alone like that).
   */
  rawPicture?: string
}) {
  const { maxBytes, maxPictureBytes, schema } = options
  const pictureFields = options.pictures
  const pictures = pictureFields.length
  for (const [k, v] of Object.entries({ maxBytes, maxPictureBytes }))
    if (!Number.isInteger(v) || v < 0) throw new Error(`imageBody: ${k} must be an integer ≥ 0`)
  // base64 of the picture plus a data: URL prefix, per picture field.
  const limit = maxBytes + pictures * (Math.ceil(maxPictureBytes / 3) * 4 + 64)
  const textFields = new Set(
    Object.entries(schema.shape)
      .filter(([, s]) => unwrap(s as z.ZodType) instanceof z.ZodString)
      .map(([k]) => k),
  )
  const tooLargeText = () =>
    new ProblemError('payload-too-large', {
      detail: `a body without pictures is at most ${maxBytes} bytes`,
      extensions: { limit: maxBytes },
    })
  const tooLarge = () =>
    new ProblemError('payload-too-large', {
      detail: `the body limit is ${limit} bytes (each picture at most ${maxPictureBytes})`,
      extensions: { limit },
    })

  return createMiddleware<AppEnv>(async function imageBody(c, next) {
    const header = c.req.header('Content-Type') ?? ''
    const type = header.split(';')[0].trim().toLowerCase()
    const raw = options.rawPicture && RAW_PICTURE_TYPES.includes(type)
    if (!raw && !(IMAGE_BODY_TYPES as readonly string[]).includes(type)) {
      throw new ProblemError('unsupported-media-type', {
        detail: `got ${type ? `"${type}"` : 'no Content-Type'}; send ${IMAGE_BODY_TYPES.join(' or ')}`,
      })
    }
    if (Number(c.req.header('Content-Length') ?? NaN) > limit) throw tooLarge()
    const bytes = await readCapped(c.req.raw.body, limit)
    if (!bytes) throw tooLarge()
    c.set(
      'json',
      raw
        ? { [options.rawPicture!]: new Blob([bytes as Uint8Array<ArrayBuffer>], { type }) }
        : type === 'application/json'
          ? parseJson(bytes)
          : await parseForm(bytes, header),
    )
    await next()

    /** JSON, where only a body with a picture field may pass `maxBytes`. */
    function parseJson(body: Uint8Array): unknown {
      let parsed: unknown
      try {
        parsed = JSON.parse(
          new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(body),
        )
      } catch (e) {
        if (body.length > maxBytes) throw tooLargeText()
        throw new ProblemError('malformed-request', {
          detail: e instanceof Error ? e.message : 'invalid JSON',
        })
      }
      const withPicture =
        typeof parsed === 'object' &&
        parsed !== null &&
        pictureFields.some((f) => Object.hasOwn(parsed, f))
      if (body.length > maxBytes && !withPicture) throw tooLargeText()
      return parsed
    }

    async function parseForm(body: Uint8Array, contentType: string) {
      let form: FormData
      try {
        form = await new Response(body, { headers: { 'content-type': contentType } }).formData()
      } catch (e) {
        throw new ProblemError('malformed-request', {
          detail: `not a multipart/form-data body: ${e instanceof Error ? e.message : e}`,
        })
      }
      const out: Record<string, unknown> = {}
      for (const [k, v] of form.entries()) {
        if (k.endsWith('[]')) {
          out[k] = [...((out[k] as unknown[]) ?? []), v]
          continue
        }
        if (Object.hasOwn(out, k))
          throw new ProblemError('malformed-request', { detail: `field ${k} is given twice` })
        out[k] = typeof v === 'string' && !textFields.has(k) ? typedValue(v) : v
      }
      return out
    }
  })
}

/** A multipart text value of a non-string field: a JSON number or boolean, else the text. */
function typedValue(v: string): unknown {
  const t = v.trim()
  if (t === 'true' || t === 'false') return t === 'true'
  if (t !== '' && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(t)) return Number(t)
  return v
}

function unwrap(s: z.ZodType): z.ZodType {
  return s instanceof z.ZodOptional ? unwrap(s.unwrap() as z.ZodType) : s
}
