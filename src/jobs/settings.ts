/**
 * @module
 * The jobs' and webhooks' timing settings (wrangler.toml `[vars]`, README "Progress and long
 * jobs"), read in one place: each is a positive number of seconds, its default when unset or not.
 */

/** Seconds settings and their defaults. */
const DEFAULTS = Object.freeze({
  /** How long an open job may go without a run alive in its coordinator before it is resent. */
  JOB_WATCHDOG_SECONDS: 60,
  /** The first retry's delay after a retryable job failure (doubling per run). */
  JOB_RETRY_BASE_SECONDS: 5,
  /** The first retry's delay of a failed webhook delivery (doubling per attempt). */
  WEBHOOK_RETRY_BASE_SECONDS: 10,
})

/** The value of a seconds setting in `env`, or its default. */
export function secondsSetting(env: object, name: keyof typeof DEFAULTS): number {
  const s = Number((env as Record<string, string | undefined>)[name])
  return Number.isFinite(s) && s > 0 ? s : DEFAULTS[name]
}
