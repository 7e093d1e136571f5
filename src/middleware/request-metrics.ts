/**
 * @module
 * `requestMetrics`: counts every request (method, matched route, status) and cache outcome in
 * the `Metrics` Durable Object, after the response, without delaying it.
 */
import { createMiddleware } from 'hono/factory'
import { routePath } from 'hono/route'
import type { AppEnv } from '../app-env'
import { recordMetrics } from '../durable/metrics'

/** Records each request once its response is ready. */
export function requestMetrics() {
  return createMiddleware<AppEnv>(async function requestMetrics(c, next) {
    await next()
    const pending = recordMetrics(c.env.METRICS, {
      request: { method: c.req.method, route: routePath(c, -1), status: c.res.status },
      cache: c.get('cacheStatus'),
    })
    try {
      c.executionCtx.waitUntil(pending)
    } catch {
      await pending // no execution context (e.g. app.request in a test)
    }
  })
}
