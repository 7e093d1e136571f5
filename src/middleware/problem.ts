/**
 * @module
 * The app's one error handler and its not-found handler: everything leaves as RFC 9457
 * problem+json.
 */
import type { Context, ErrorHandler, NotFoundHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { blankProblem, ProblemError, problemResponse } from '../problem'

/**
 * Renders `ProblemError`s as they are, anything else as 500. A bare `HTTPException` (thrown by
 * Hono or a library, never by our code) has no problem type of ours: guessing one from its status
 * would mislabel it (a 403 is not necessarily `key-revoked`), so it renders as RFC 9457's
 * `about:blank` with the status's own reason phrase as title (RFC 9457 §4.2.1).
 */
export const onProblem: ErrorHandler = (err, c: Context) => {
  const instance = new URL(c.req.url).pathname
  if (err instanceof ProblemError) return err.getResponse(instance)
  if (err instanceof HTTPException) return blankProblem(err.status, err.message, instance)
  console.error('unhandled error', err)
  return problemResponse('internal-error', { extensions: { instance } })
}

/** 404 `not-found` for every unmatched route. */
export const notFoundProblem: NotFoundHandler = (c) =>
  problemResponse('not-found', {
    detail: `no route for ${c.req.method} ${new URL(c.req.url).pathname}`,
    extensions: { instance: new URL(c.req.url).pathname },
  })
