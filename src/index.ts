/**
 * @module
 * The Worker entry: the API app over the isolate's engine (`getEngine`), and the Durable Object
 * classes.
 */
import { env } from 'cloudflare:workers'
import { createApp, rateLimitFromVars } from './app'
import { installedEngine, installEngineProvider } from './engine-provider'
import { getEngine, type EngineEnv } from './gpu/engine'

// The GPU backend vars are optional and absent from the generated `Env` unless configured.
installEngineProvider((e) => getEngine(e as Env & EngineEnv))

/** The API. */
export default createApp({ engine: installedEngine, rateLimit: rateLimitFromVars(env) })

export { GenerationCoordinator } from './durable/generation-coordinator'
export { KeyGuard } from './durable/key-guard'
export { Metrics } from './durable/metrics'
