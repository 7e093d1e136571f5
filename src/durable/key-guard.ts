/**
 * @module
 * `KeyGuard`: one Durable Object per API key (`idFromName(keyId)`). It holds the key's
 * revocation flag (strongly consistent, so a revocation applies to the next request anywhere)
 * and its token bucket for the generation quota.
 */
import { DurableObject } from 'cloudflare:workers'
import type { KeyState, RateLimitPolicy } from '../keys/api-keys'

/** State of a token bucket at `updatedAt` (ms since epoch). */
export interface BucketState {
  tokens: number
  updatedAt: number
}

/** Outcome of taking from a bucket, in the units the RateLimit headers use. */
export interface QuotaResult {
  allowed: boolean
  limit: number
  /** Whole tokens left after this call. */
  remaining: number
  /** Seconds until the bucket is full again. */
  resetSeconds: number
  /** Seconds until `cost` tokens are available (0 when allowed). */
  retryAfterSeconds: number
  periodSeconds: number
}

/**
 * Takes `cost` tokens from a bucket refilled continuously at `burst / period_seconds` per second;
 * pure, so the arithmetic is testable. `cost` 0 only reports the state.
 */
export function takeTokens(
  state: BucketState | undefined,
  cost: number,
  policy: RateLimitPolicy,
  now: number,
): { state: BucketState; result: QuotaResult } {
  const rate = policy.burst / policy.period_seconds
  const prev = state ?? { tokens: policy.burst, updatedAt: now }
  const elapsed = Math.max(0, now - prev.updatedAt) / 1000
  let tokens = Math.min(policy.burst, prev.tokens + elapsed * rate)
  const allowed = cost <= tokens
  if (allowed) tokens -= cost
  const deficit = Math.max(0, cost - tokens)
  return {
    state: { tokens, updatedAt: now },
    result: {
      allowed,
      limit: policy.burst,
      remaining: Math.floor(tokens),
      resetSeconds: Math.ceil((policy.burst - tokens) / rate),
      // A cost above the burst can never be met: ask for a full period.
      retryAfterSeconds: allowed
        ? 0
        : cost > policy.burst
          ? policy.period_seconds
          : Math.max(1, Math.ceil(deficit / rate)),
      periodSeconds: policy.period_seconds,
    },
  }
}

/** Per-key Durable Object: revocation flag and token bucket. */
export class KeyGuard extends DurableObject<Env> {
  private revoked = false
  private bucket: BucketState | undefined

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    ctx.blockConcurrencyWhile(async () => {
      this.revoked = (await ctx.storage.get<boolean>('revoked')) ?? false
      this.bucket = await ctx.storage.get<BucketState>('bucket')
    })
  }

  /**
   * Revocation and quota in one round trip: an authenticated cache hit needs both and nothing
   * else from this object (its zero charge is computed from `bucket` by the caller).
   */
  async check(): Promise<KeyState> {
    return { revoked: this.revoked, bucket: this.bucket }
  }

  /** Revokes the key; every later `check` sees it. */
  async revoke(): Promise<void> {
    this.revoked = true
    await this.ctx.storage.put('revoked', true)
  }

  /** Gives back tokens taken for work that did not happen (a failed generation). */
  async refund(cost: number, policy: RateLimitPolicy): Promise<QuotaResult> {
    const now = Date.now()
    const refilled = takeTokens(this.bucket, 0, policy, now).state
    this.bucket = { tokens: Math.min(policy.burst, refilled.tokens + cost), updatedAt: now }
    await this.ctx.storage.put('bucket', this.bucket)
    return takeTokens(this.bucket, 0, policy, now).result
  }

  /** Takes `cost` tokens if available (0 to only read the state). */
  async take(cost: number, policy: RateLimitPolicy): Promise<QuotaResult> {
    const { state, result } = takeTokens(this.bucket, cost, policy, Date.now())
    if (cost > 0 && result.allowed) {
      this.bucket = state
      await this.ctx.storage.put('bucket', state)
    }
    return result
  }
}
