/**
 * @module
 * The base of the absolute URLs an answer carries (image URLs, embed URLs): the deployment's
 * `PUBLIC_ORIGIN` when configured, else the request's own URL. Behind a proxy or a custom domain
 * the `Host` a request arrives with is the client's to choose; a configured origin makes every
 * link name the deployment's address instead, so no caller can mint links to another host.
 */
import type { Context } from 'hono'
import type { AppEnv } from './app-env'

/** The URL that relative links of this request resolve against. */
export function publicBase(c: Context<AppEnv>): string {
  const configured = (c.env as { PUBLIC_ORIGIN?: string }).PUBLIC_ORIGIN?.trim()
  if (!configured) return c.req.url
  const url = new URL(configured)
  if (url.origin !== configured.replace(/\/$/, ''))
    throw new Error(
      `PUBLIC_ORIGIN must be an origin such as https://tti.example.com, got ${configured}`,
    )
  return url.origin + '/'
}
