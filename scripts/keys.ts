/**
 * @module
 * `npm run keys -- <command>`: manages API keys of a running server (`npm start`) through its
 * admin endpoints, with the admin token from `ADMIN_TOKEN` or `.dev.vars`.
 *
 * @example
 * npm run keys -- create --name alice --scopes generate,read --burst 60 --period 60
 * KEY=$(npm run -s keys -- create --key-only)   # just the key, for scripts
 * npm run keys -- list
 * npm run keys -- revoke 3f2a9c0d1e4b5a67
 *
 * The server URL defaults to http://localhost:8787 (`TTI_URL` overrides it).
 */
import { parseArgs } from 'node:util'
import { adminToken } from './dev-vars'

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      scopes: { type: 'string' },
      burst: { type: 'string' },
      period: { type: 'string' },
      'key-only': { type: 'boolean' },
    },
  })
  const [command, id] = positionals
  const base = process.env.TTI_URL ?? 'http://localhost:8787'
  const headers = { Authorization: `Bearer ${adminToken()}`, 'Content-Type': 'application/json' }
  let res: Response
  if (command === 'create') {
    const body: Record<string, unknown> = {}
    if (values.name) body.name = values.name
    if (values.scopes) body.scopes = values.scopes.split(',')
    if (values.burst || values.period) {
      body.rate_limit = {
        burst: Number(values.burst ?? 30),
        period_seconds: Number(values.period ?? 60),
      }
    }
    res = await call(`${base}/v1/keys`, { method: 'POST', headers, body: JSON.stringify(body) })
  } else if (command === 'list') {
    res = await call(`${base}/v1/keys`, { headers })
  } else if (command === 'revoke' && id) {
    res = await call(`${base}/v1/keys/${encodeURIComponent(id)}`, { method: 'DELETE', headers })
  } else {
    console.error(
      'usage: npm run keys -- create [--name N] [--scopes generate,read] [--burst B --period S] [--key-only]',
    )
    console.error('       npm run keys -- list | revoke <id>')
    process.exit(2)
  }
  const text = await res.text()
  if (!res.ok) {
    // Say which server answered: another one on the port is the usual cause of a 401 here.
    console.error(`${base} answered ${res.status}: ${text} (set TTI_URL for another server)`)
    process.exit(1)
  }
  if (values['key-only']) {
    console.log((JSON.parse(text) as { key: string }).key)
    return
  }
  console.log(
    res.headers.get('content-type')?.includes('json')
      ? JSON.stringify(JSON.parse(text), null, 2)
      : text,
  )
}

/** `fetch` whose network failure names the URL it tried. */
async function call(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init)
  } catch (e) {
    throw new Error(
      `cannot reach ${url}: ${(e as Error).cause ?? (e as Error).message} (is the server running? TTI_URL sets another)`,
    )
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e)
    process.exit(1)
  })
}
