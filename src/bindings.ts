/**
 * @module
 * The one place that maps the Worker's `Env` onto the small structural dependencies the domain
 * code takes, so tests can build the same dependencies around fault-injecting wrappers.
 */
import { hotImages } from './cache/hot-images'
import type { ImageStoreDeps } from './cache/image-store'
import type { ServeImageDeps } from './cache/serve-image'
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

/** What serving image bytes needs: the store, the Cache API where the runtime has one, and the
 * isolate's copy of recent bytes. */
export function serveDeps(env: Env): ServeImageDeps {
  return {
    ...storeDeps(env),
    cache: typeof caches === 'undefined' ? undefined : caches.default,
    hot: hotImages,
  }
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
  keyId: string,
): Promise<CreateImagesDeps> {
  return {
    engine: await engine(env),
    store: storeDeps(env),
    coordinator: (requestKey: string) => coordinator(env, requestKey),
    charge,
    ...(cacheScope(env) === 'key' ? { cacheScope: keyId } : {}),
  }
}

/** The values of the CACHE_SCOPE setting. */
export const CACHE_SCOPES = Object.freeze(['shared', 'key'] as const)

/**
 * `CACHE_SCOPE`: `shared` (the default: one cache entry per model input, whoever asks) or `key`
 * (each API key its own entries, for deployments whose users must not learn, from a hit, what
 * others asked). Stored images stay content-addressed either way.
 */
export function cacheScope(env: Env): (typeof CACHE_SCOPES)[number] {
  const v = ((env as { CACHE_SCOPE?: string }).CACHE_SCOPE ?? '').trim() || 'shared'
  if (!(CACHE_SCOPES as readonly string[]).includes(v))
    throw new Error(`CACHE_SCOPE must be one of ${CACHE_SCOPES.join(', ')}, got ${v}`)
  return v as (typeof CACHE_SCOPES)[number]
}
