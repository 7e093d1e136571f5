/**
 * @module
 * Local development's `.dev.vars` (the secrets `wrangler dev` reads). Run as a script, before
 * `npm start`: writes `.dev.vars` with a random `ADMIN_TOKEN` when there is none, so the admin
 * endpoints, `npm run keys` and `tti keys` work on a fresh checkout. Never overwrites.
 * Imported: `adminToken()`, the one lookup of the admin token that `npm run keys` and `tti keys`
 * share.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'

/** Where `wrangler dev` reads local secrets from: the working directory's `.dev.vars`. */
export const DEV_VARS = '.dev.vars'

/** A variable of a `.dev.vars` file (`NAME=value`, optionally quoted); undefined if absent. */
export function devVar(name: string, path = DEV_VARS): string | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
  const line = new RegExp(`^\\s*${name}\\s*=\\s*"?([^"\\n]*)"?\\s*$`, 'm')
  return text.match(line)?.[1] || undefined
}

/**
 * The local admin token: `ADMIN_TOKEN` from the environment, else from `.dev.vars` (what the
 * local server itself uses). Throws saying where it looked when neither has one.
 */
export function adminToken(path = DEV_VARS): string {
  const token = process.env.ADMIN_TOKEN || devVar('ADMIN_TOKEN', path)
  if (token) return token
  throw new Error(
    existsSync(path)
      ? `${path} has no ADMIN_TOKEN line (and ADMIN_TOKEN is not set)`
      : `no ADMIN_TOKEN: set it or create ${path} (npm start writes one; see .dev.vars.example)`,
  )
}

if (import.meta.url === `file://${process.argv[1]}` && !existsSync(DEV_VARS)) {
  writeFileSync(DEV_VARS, `ADMIN_TOKEN=${randomBytes(32).toString('base64url')}\n`, {
    mode: 0o600,
  })
  console.log('wrote .dev.vars with a random ADMIN_TOKEN (used by `npm run keys` and `tti keys`)')
}
