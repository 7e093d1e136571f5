/**
 * @module
 * The app's one error handler and its not-found handler: everything leaves as RFC 9457
 * problem+json.
 */
import type { Context, ErrorHandler, NotFoundHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { PROBLEM_TYPES, ProblemError, problemResponse, type ProblemSlug } from '../problem'

/** Renders `ProblemError`s as they are, other HTTP errors by status, anything else as 500. */
export const onProblem: ErrorHandler = (err, c: Context) => {
  const instance = new URL(c.req.url).pathname
  if (err instanceof ProblemError) return err.getResponse(instance)
  if (err instanceof HTTPException) {
    const slug = (Object.keys(PROBLEM_TYPES) as ProblemSlug[]).find(
      (s) => PROBLEM_TYPES[s].status === err.status,
    )
    return problemResponse(slug ?? 'internal-error', {
      detail: err.message,
      extensions: { instance },
    })
  }
  console.error('unhandled error', err)
  return problemResponse('internal-error', { extensions: { instance } })
}

/** 404 `not-found` for every unmatched route. */
export const notFoundProblem: NotFoundHandler = (c) =>
  problemResponse('not-found', {
    detail: `no route for ${c.req.method} ${new URL(c.req.url).pathname}`,
    extensions: { instance: new URL(c.req.url).pathname },
  })
