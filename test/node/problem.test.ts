/**
 * The app's error handler: our problems render as they are; a bare `HTTPException` (from Hono or
 * a library) is not relabelled as one of ours by its status, but rendered as `about:blank`.
 */
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { describe, expect, it } from 'vitest'
import { onProblem } from '../../src/middleware/problem'
import { PROBLEM_TYPE_BASE, ProblemError } from '../../src/problem'

const app = new Hono()
  .get('/bare/:status', (c) => {
    throw new HTTPException(Number(c.req.param('status')) as 403, { message: 'from a library' })
  })
  .get('/ours', () => {
    throw new ProblemError('key-revoked')
  })
  .onError(onProblem)

describe('onProblem', () => {
  it('renders a bare 403 as about:blank with the reason phrase, not as key-revoked', async () => {
    const res = await app.request('/bare/403')
    expect(res.status).toBe(403)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(await res.json()).toEqual({
      type: 'about:blank',
      title: 'Forbidden',
      status: 403,
      detail: 'from a library',
      instance: '/bare/403',
    })
  })

  it('keeps the status of any bare HTTPException', async () => {
    for (const status of [400, 401, 404, 413, 429, 503]) {
      const res = await app.request(`/bare/${status}`)
      expect(res.status).toBe(status)
      expect(((await res.json()) as { type: string }).type).toBe('about:blank')
    }
  })

  it('renders our own problems with their type', async () => {
    const res = await app.request('/ours')
    expect(res.status).toBe(403)
    expect(((await res.json()) as { type: string }).type).toBe(`${PROBLEM_TYPE_BASE}key-revoked`)
  })
})
