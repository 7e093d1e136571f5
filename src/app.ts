/**
 * @module
 * The Hono app factory. It takes the engine as a provider so the same app runs in production
 * (`src/index.ts` passes the WebAssembly engine) and in tests.
 *
 * @example
 * export default createApp({ engine: getEngine, rateLimit: { burst: 30, period_seconds: 60 } })
 */
import { Hono } from 'hono'
import type { AppEnv } from './app-env'
import { huggingFaceRoutes, openAIRoutes } from './compat/routes'
import type { EngineProvider } from './engine/provider'
import type { RateLimitPolicy } from './keys/api-keys'
import { notFoundProblem, onProblem } from './middleware/problem'
import { checkPolicy } from './middleware/rate-limit'
import { requestMetrics } from './middleware/request-metrics'
import { openApiRoutes } from './openapi/routes'
import { batchRoutes } from './routes/batch'
import { embedRoutes } from './routes/embeds'
import { imageRoutes } from './routes/images'
import { jobRoutes } from './routes/jobs'
import { keyRoutes } from './routes/keys'
import { modelRoutes } from './routes/models'
import { opsRoutes } from './routes/ops'
import { playgroundRoutes } from './ui/playground'

/** Default request body limit: prompts are small, so 8 KiB is plenty. */
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024

/** Options of `createApp`. */
export interface AppOptions {
  /** Returns the engine for an environment (called per request; it should cache). */
  engine: EngineProvider
  /** Default per-key generation quota (keys may carry their own). */
  rateLimit: RateLimitPolicy
  /** Largest accepted JSON body, in bytes. */
  maxBodyBytes?: number
}

/** Builds the API. */
export function createApp(options: AppOptions): Hono<AppEnv> {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const rateLimit = checkPolicy(options.rateLimit)
  const app = new Hono<AppEnv>()
  app.use(requestMetrics())
  app.route('/', opsRoutes())
  app.route('/v1/images', imageRoutes({ engine: options.engine, maxBodyBytes, rateLimit }))
  app.route('/v1/jobs', jobRoutes())
  app.route('/v1/models', modelRoutes({ engine: options.engine }))
  app.route('/v1/keys', keyRoutes({ maxBodyBytes }))
  // Drop-in OpenAI / Hugging Face clients and the playground (docs/clients.md).
  const generation = { engine: options.engine, maxBodyBytes, rateLimit }
  app.route('/v1', openAIRoutes(generation))
  app.route('/v1/hf', huggingFaceRoutes(generation))
  // Signed embed URLs for static pages and the build-time batch (docs/api.md).
  app.route('/v1/embeds', embedRoutes(generation))
  app.route('/v1/batch', batchRoutes(generation))
  app.route('/', playgroundRoutes())
  // The OpenAPI document of every route above, and its interactive reference.
  app.route('/', openApiRoutes({ maxBodyBytes }))
  app.notFound(notFoundProblem)
  app.onError(onProblem)
  return app
}

/** Reads the default quota from the `RATE_LIMIT_*` vars. */
export function rateLimitFromVars(vars: {
  RATE_LIMIT_BURST?: string
  RATE_LIMIT_PERIOD_SECONDS?: string
}): RateLimitPolicy {
  return {
    burst: Number(vars.RATE_LIMIT_BURST ?? 30),
    period_seconds: Number(vars.RATE_LIMIT_PERIOD_SECONDS ?? 60),
  }
}
