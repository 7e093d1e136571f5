/**
 * @module
 * `GET /v1/jobs/{id}`: the state of a generation started with `Prefer: respond-async` (or any
 * other way: the id is the request key).
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { coordinator, storeDeps } from '../bindings'
import { findJob } from '../images/jobs'
import { describeImages } from '../images/progress'
import { apiKeyAuth } from '../middleware/auth'
import { publicBase } from '../public-url'

/** Seconds a poller should wait before asking again about a running job. */
const POLL_SECONDS = 1

/** The job routes, mounted at `/v1/jobs`. */
export function jobRoutes() {
  return new Hono<AppEnv>().get(
    '/:id{[0-9a-f]{64}}',
    apiKeyAuth({ scope: 'generate' }),
    async (c) => {
      const id = c.req.param('id')
      const job = await findJob(
        { store: storeDeps(c.env), coordinator: (key) => coordinator(c.env, key) },
        id,
      )
      c.header('Cache-Control', 'no-store')
      if (job.status === 'running') {
        c.header('Retry-After', String(POLL_SECONDS))
        return c.json({ id, status: job.status, progress: job.progress })
      }
      const { images, model } = describeImages(job.entry, false, publicBase(c))
      return c.json({ id, status: job.status, images, model })
    },
  )
}
