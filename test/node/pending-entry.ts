/**
 * @module
 * TEMPORARY worker entry for tests until the compatibility routes and the playground are mounted
 * in `src/app.ts`: the real entry plus those routes.
 */
import { env } from 'cloudflare:workers'
import { DEFAULT_MAX_BODY_BYTES, rateLimitFromVars } from '../../src/app'
import { huggingFaceRoutes, openAIRoutes } from '../../src/compat/routes'
import { installedEngine } from '../../src/engine-provider'
import app from '../../src/index'
import { playgroundRoutes } from '../../src/ui/playground'

const options = {
  engine: installedEngine,
  maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
  rateLimit: rateLimitFromVars(env),
}
app.route('/v1', openAIRoutes(options))
app.route('/v1/hf', huggingFaceRoutes(options))
app.route('/', playgroundRoutes())

/** The API with the pending routes. */
export default app
export * from '../../src/index'
