/**
 * @module
 * The one place that maps the Worker's `Env` onto the small structural dependencies the domain
 * code takes, so tests can build the same dependencies around fault-injecting wrappers.
 */
import type { ImageStoreDeps } from './cache/image-store'
import type { EngineProvider } from './engine/provider'
import type { CreateImagesDeps } from './images/create-images'
import type { KeyDeps } from './keys/api-keys'

/** Key storage and revocation flags. */
export function keyDeps(env: Env): KeyDeps {
  return { kv: env.KEYS, guard: (id) => keyGuard(env, id) }
}

/** The `KeyGuard` Durable Object of an API key. */
export function keyGuard(env: Env, keyId: string) {
  return env.KEY_GUARD.get(env.KEY_GUARD.idFromName(keyId))
}

/** Image bytes (R2) and the request index (KV). */
export function storeDeps(env: Env): ImageStoreDeps {
  return { images: env.IMAGES, index: env.INDEX }
}

/** The single-flight coordinator of a request key. */
export function coordinator(env: Env, requestKey: string) {
  return env.COORDINATOR.get(env.COORDINATOR.idFromName(requestKey))
}

/**
 * What `createImages` needs for one request: the engine, the store, the single-flight
 * coordinators and the caller's quota charge (set by the `rateLimit` middleware).
 */
export async function imageDeps(
  env: Env,
  engine: EngineProvider,
  charge: CreateImagesDeps['charge'],
) {
  return {
    engine: await engine(env),
    store: storeDeps(env),
    coordinator: (requestKey: string) => coordinator(env, requestKey),
    charge,
  }
}
