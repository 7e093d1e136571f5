/**
 * @module
 * `rateLimit`: the per-key generation quota. It gives the route a `charge(cost)` (the route
 * charges generated images, and 0 for cache hits; the returned `refund` undoes a charge whose
 * generation failed) backed by the key's `KeyGuard` token bucket,
 * and sets `RateLimit-*` headers (IETF draft-ietf-httpapi-ratelimit-headers) on the response.
 */
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env'
import { keyGuard } from '../bindings'
import { takeTokens, type QuotaResult } from '../durable/key-guard'
import type { RateLimitPolicy } from '../keys/api-keys'
import { ProblemError } from '../problem'

/** Validates a policy, throwing on anything but positive integers. */
export function checkPolicy(policy: RateLimitPolicy): RateLimitPolicy {
  for (const [k, v] of Object.entries(policy)) {
    if (!Number.isInteger(v) || v <= 0)
      throw new Error(`rateLimit: ${k} must be a positive integer, got ${v}`)
  }
  return Object.freeze({ ...policy })
}

/** Installs `charge` for the authenticated key (its own policy, else `defaults`). */
export function rateLimit(options: { defaults: RateLimitPolicy }) {
  const defaults = checkPolicy(options.defaults)
  return createMiddleware<AppEnv>(async function rateLimit(c, next) {
    const key = c.get('apiKey')
    const policy = key.rate_limit ?? defaults
    const guard = () => keyGuard(c.env, key.id)
    let last: QuotaResult | undefined
    c.set('quotaPolicy', policy)
    c.set('charge', async (cost) => {
      // A zero charge (a hit) only reads the bucket, which `apiKeyAuth` read with revocation.
      const known = c.get('keyState')
      if (cost === 0 && known) {
        last = takeTokens(known.bucket, 0, policy, Date.now()).result
        return async () => {}
      }
      last = await guard().take(cost, policy)
      const refund = async () => {
        last = await guard().refund(cost, policy)
      }
      if (!last.allowed) {
        throw new ProblemError('rate-limited', {
          detail: `this request needs ${cost} image credits; the key's quota is ${policy.burst} per ${policy.period_seconds} s`,
          headers: { 'Retry-After': String(last.retryAfterSeconds) },
          extensions: { retry_after: last.retryAfterSeconds },
        })
      }
      return refund
    })
    await next()
    if (last) {
      c.res.headers.set('RateLimit-Limit', String(last.limit))
      c.res.headers.set('RateLimit-Remaining', String(last.remaining))
      c.res.headers.set('RateLimit-Reset', String(last.resetSeconds))
      c.res.headers.set('RateLimit-Policy', `${last.limit};w=${last.periodSeconds}`)
    }
  })
}
