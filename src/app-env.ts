/**
 * @module
 * The Hono environment shared by the app, its middleware and routes.
 */
import type { ApiKeyRecord, KeyState, RateLimitPolicy } from './keys/api-keys'

/** Bindings and per-request variables of the app. */
export interface AppEnv {
  Bindings: Env
  Variables: {
    /** The authenticated API key (set by `apiKeyAuth`). */
    apiKey: ApiKeyRecord
    /** Its revocation flag and quota bucket as `apiKeyAuth` read them (one round trip). */
    keyState: KeyState
    /** The parsed JSON body (set by `jsonBody`). */
    json: unknown
    /**
     * Charges images against the key's quota (set by `rateLimit`); throws 429 when exhausted.
     * Resolves to a function that refunds the charge.
     */
    charge: (cost: number) => Promise<() => Promise<void>>
    /** The key's quota policy (set by `rateLimit`): what a job's refund gives back against. */
    quotaPolicy: RateLimitPolicy
    /** Whether the request was served from the image cache (read by `requestMetrics`). */
    cacheStatus: 'HIT' | 'MISS'
  }
}
