/**
 * @module
 * Runs before `npm start`: writes `.dev.vars` with a random `ADMIN_TOKEN` when there is none,
 * so the admin endpoints and `npm run keys` work on a fresh checkout. Never overwrites.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'

if (!existsSync('.dev.vars')) {
  writeFileSync('.dev.vars', `ADMIN_TOKEN=${randomBytes(32).toString('base64url')}\n`, {
    mode: 0o600,
  })
  console.log('wrote .dev.vars with a random ADMIN_TOKEN (used by `npm run keys`)')
}
