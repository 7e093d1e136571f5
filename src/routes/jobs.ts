/**
 * @module
 * `GET /v1/jobs/{id}`: the state of a generation started with `Prefer: respond-async` (or any
 * other way: the id is the request key). `DELETE /v1/jobs/{id}`: cancels the caller's job.
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { coordinator, storeDeps } from '../bindings'
import { cancelJob, findJob, jobBody, type JobDeps } from '../images/jobs'
import { apiKeyAuth } from '../middleware/auth'
import { publicBase } from '../public-url'

/** Seconds a poller should wait before asking again about a queued or running job. */
const POLL_SECONDS = 1

/** The job routes, mounted at `/v1/jobs`. */
export function jobRoutes() {
  const deps = (env: Env): JobDeps => ({
    store: storeDeps(env),
    coordinator: (key) => coordinator(env, key),
  })
  return new Hono<AppEnv>()
    .get('/:id{[0-9a-f]{64}}', apiKeyAuth({ scope: 'generate' }), async (c) => {
      const id = c.req.param('id')
      const job = await findJob(deps(c.env), id)
      c.header('Cache-Control', 'no-store')
      if (job.status === 'queued' || job.status === 'running')
        c.header('Retry-After', String(POLL_SECONDS))
      return c.json(jobBody(id, job, publicBase(c)))
    })
    .delete('/:id{[0-9a-f]{64}}', apiKeyAuth({ scope: 'generate' }), async (c) => {
      c.header('Cache-Control', 'no-store')
      return c.json(await cancelJob(deps(c.env), c.req.param('id'), c.get('apiKey').id))
    })
}
