/**
 * @module
 * Operations: `GET /healthz` (public) and `GET /metrics` (Prometheus text, admin only).
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { PIPELINE_VERSION } from '../cache/cache-key'
import { readMetrics } from '../durable/metrics'
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from '../metrics/prometheus'
import { adminAuth } from '../middleware/auth'

/** The operations routes, mounted at `/`. */
export function opsRoutes() {
  return new Hono<AppEnv>()
    .get('/healthz', (c) => c.json({ status: 'ok', pipeline_version: PIPELINE_VERSION }))
    .get('/metrics', adminAuth(), async (c) =>
      c.body(renderPrometheus(await readMetrics(c.env.METRICS)), 200, {
        'Content-Type': PROMETHEUS_CONTENT_TYPE,
      }),
    )
}
