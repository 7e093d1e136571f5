/**
 * @module
 * `jsonBody`: enforces `Content-Type: application/json` (415) and a byte limit (413) on both
 * the declared `Content-Length` and the bytes actually streamed, before parsing (400).
 */
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env'
import { ProblemError } from '../problem'
import { readCapped } from '../util'

/** Reads and parses a bounded JSON body into `c.var.json`. */
export function jsonBody(options: { maxBytes: number }) {
  const { maxBytes } = options
  if (!Number.isInteger(maxBytes) || maxBytes <= 0) {
    throw new Error(`jsonBody: maxBytes must be a positive integer, got ${maxBytes}`)
  }
  const tooLarge = () =>
    new ProblemError('payload-too-large', {
      detail: `the body limit is ${maxBytes} bytes`,
      extensions: { limit: maxBytes },
    })

  return createMiddleware<AppEnv>(async function jsonBody(c, next) {
    const type = c.req.header('Content-Type')?.split(';')[0].trim().toLowerCase()
    if (type !== 'application/json') {
      throw new ProblemError('unsupported-media-type', {
        detail: `got ${type ? `"${type}"` : 'no Content-Type'}; send application/json`,
      })
    }
    const declared = Number(c.req.header('Content-Length') ?? NaN)
    if (declared > maxBytes) throw tooLarge()

    const bytes = await readCapped(c.req.raw.body, maxBytes)
    if (!bytes) throw tooLarge()
    try {
      c.set(
        'json',
        JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes)),
      )
    } catch (e) {
      throw new ProblemError('malformed-request', {
        detail: e instanceof Error ? e.message : 'invalid JSON',
      })
    }
    await next()
  })
}
