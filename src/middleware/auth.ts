/**
 * @module
 * Authentication middleware: `apiKeyAuth` for API keys with a required scope, `adminAuth` for
 * the deployment's `ADMIN_TOKEN`. Both compare secrets in constant time.
 */
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env'
import { keyDeps } from '../bindings'
import { authenticate, digestsEqual, SCOPES, unauthorized, type Scope } from '../keys/api-keys'
import { ProblemError } from '../problem'
import { sha256Hex } from '../util'

function bearer(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer\s+(\S+)\s*$/i)
  return m?.[1]
}

/** Requires an API key (`Authorization: Bearer tti_…`) holding `scope`; sets `apiKey`. */
export function apiKeyAuth(options: { scope: Scope }) {
  if (!SCOPES.includes(options.scope)) throw new Error(`apiKeyAuth: unknown scope ${options.scope}`)
  const { scope } = options
  return createMiddleware<AppEnv>(async function apiKeyAuth(c, next) {
    const header = c.req.header('Authorization')
    // A key sent without the scheme is a common slip: say so rather than "missing API key".
    if (header && !bearer(header) && /^\s*tti_/.test(header))
      throw unauthorized('send the key as Authorization: Bearer tti_… (the "Bearer " is missing)')
    const { record, state } = await authenticate(keyDeps(c.env), bearer(header))
    if (!record.scopes.includes(scope)) {
      throw new ProblemError('insufficient-scope', {
        detail: `this endpoint needs the "${scope}" scope; the key has ${record.scopes.join(', ')}`,
        extensions: { required_scope: scope },
      })
    }
    c.set('apiKey', record)
    c.set('keyState', state)
    await next()
  })
}

/** Requires `Authorization: Bearer <ADMIN_TOKEN>`; 503 when no admin token is configured. */
export function adminAuth() {
  return createMiddleware<AppEnv>(async function adminAuth(c, next) {
    const expected = c.env.ADMIN_TOKEN
    if (!expected) throw new ProblemError('admin-disabled')
    const presented = bearer(c.req.header('Authorization'))
    if (!presented) throw unauthorized('missing admin token')
    // Hash both sides so the constant-time compare sees equal lengths whatever was sent.
    if (!digestsEqual(await sha256Hex(presented), await sha256Hex(expected))) {
      throw unauthorized('invalid admin token')
    }
    await next()
  })
}
