/**
 * @module
 * Where the app and the generation coordinator get their engine. `src/index.ts` installs
 * `getEngine` from `src/engine/select`; tests may install a wrapper around it (to count calls,
 * delay or fail `generate`) — never a stand-in model.
 */
import type { TextToImageEngine } from './types'

/** Returns the engine serving an environment. */
export type EngineProvider = (env: Env) => Promise<TextToImageEngine>

let installed: EngineProvider | undefined

/** Installs the engine provider; returns the one it replaces. */
export function installEngineProvider(provider: EngineProvider): EngineProvider | undefined {
  const previous = installed
  installed = provider
  return previous
}

/** The installed provider's engine for `env`. */
export function installedEngine(env: Env): Promise<TextToImageEngine> {
  if (!installed) return Promise.reject(new Error('no engine provider installed'))
  return installed(env)
}
