/**
 * @module
 * The Worker entry: the API app over the isolate's engine (`getEngine`), the Cron Trigger that
 * probes the GPU backends (`[env.gpu]` in wrangler.toml), the queue consumers (accepted jobs,
 * webhooks) and the Durable Object classes.
 */
import { env } from 'cloudflare:workers'
import { createApp, rateLimitFromVars } from './app'
import { installedEngine, installEngineProvider } from './engine/provider'
import { getEngine, recordBackendHealth, type EngineEnv } from './engine/select'
import { consumeQueue } from './jobs/consumer'

// The GPU backend vars are optional and absent from the generated `Env` unless configured.
installEngineProvider((e) => getEngine(e as Env & EngineEnv))

const app = createApp({ engine: installedEngine, rateLimit: rateLimitFromVars(env) })

/**
 * The API, the scheduled probe of the GPU backends (a no-op when none is configured), and the
 * consumers of the JOBS and WEBHOOKS queues.
 */
export default {
  fetch: app.fetch,
  // Awaited rather than waitUntil: the invocation's outcome then says whether the probe ran.
  async scheduled(_controller, env) {
    await recordBackendHealth(env as Env & EngineEnv)
  },
  async queue(batch, env) {
    await consumeQueue(batch, env)
  },
} satisfies ExportedHandler<Env>

export { GenerationCoordinator } from './durable/generation-coordinator'
export { KeyGuard } from './durable/key-guard'
export { Metrics } from './durable/metrics'
