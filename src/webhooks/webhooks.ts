/**
 * @module
 * Webhooks of accepted jobs, signed per the Standard Webhooks specification
 * (https://www.standardwebhooks.com, "Signature scheme"): each delivery carries `webhook-id`
 * (the same on every retry, for the receiver's idempotency), `webhook-timestamp` (Unix seconds of
 * this attempt) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 over
 * `id.timestamp.body`, keyed by the API key's `whsec_` secret, base64-decoded).
 *
 * Targets are checked when a job is accepted and again before each delivery: in production only
 * `https:` URLs whose host is a public name or address; private, loopback and link-local
 * addresses (and `localhost`, `.local`, `.internal` names) only where the deployment allows them
 * (`WEBHOOK_PRIVATE_TARGETS = "allow"`, which `npm start` and the tests set).
 *
 * @example
 * // POST https://example.com/hooks
 * // webhook-id: msg_3f1c…  webhook-timestamp: 1764662400  webhook-signature: v1,K5oZ…=
 * // {"type":"image.job.succeeded","timestamp":"2026-12-02T08:00:00.000Z","data":{"id":…}}
 */

/** The prefix of a webhook secret (Standard Webhooks' convention). */
export const WEBHOOK_SECRET_PREFIX = 'whsec_'

/** The event types a job's webhook reports. */
export const WEBHOOK_EVENTS = Object.freeze([
  'image.job.succeeded',
  'image.job.failed',
  'image.job.cancelled',
] as const)

/** One event type. */
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number]

/** A delivery waiting in the WEBHOOKS queue: what to send, where, signed with whose secret. */
export interface WebhookMessage {
  /** `webhook-id`: fixed when the event happens, repeated on every attempt. */
  id: string
  /** The API key whose secret signs it (read at each attempt, so a rotation applies). */
  keyId: string
  url: string
  /** The JSON payload, as sent. */
  body: string
}

/** Draws a webhook secret: `whsec_` + base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return WEBHOOK_SECRET_PREFIX + toBase64(crypto.getRandomValues(new Uint8Array(32)))
}

/** The payload of an event: `type`, ISO `timestamp` and the job as `GET /v1/jobs/{id}` shows it. */
export function webhookPayload(type: WebhookEvent, data: unknown, now = new Date()): string {
  return JSON.stringify({ type, timestamp: now.toISOString(), data })
}

/** A new delivery of `body` to `url` for key `keyId`, with a fresh `webhook-id`. */
export function webhookMessage(keyId: string, url: string, body: string): WebhookMessage {
  const id = 'msg_' + [...crypto.getRandomValues(new Uint8Array(12))].map(hex2).join('')
  return { id, keyId, url, body }
}

/** The `webhook-signature` value of one delivery attempt. */
export async function signWebhook(
  secret: string,
  id: string,
  timestamp: number,
  body: string,
): Promise<string> {
  if (!secret.startsWith(WEBHOOK_SECRET_PREFIX)) throw new Error('not a whsec_ webhook secret')
  const key = await crypto.subtle.importKey(
    'raw',
    fromBase64(secret.slice(WEBHOOK_SECRET_PREFIX.length)),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  const mac = await crypto.subtle.sign(
    'HMAC',
    key,
    new TextEncoder().encode(`${id}.${timestamp}.${body}`),
  )
  return `v1,${toBase64(new Uint8Array(mac))}`
}

/** The headers of one attempt (Standard Webhooks' three, plus the JSON content type). */
export async function webhookHeaders(
  secret: string,
  message: Pick<WebhookMessage, 'id' | 'body'>,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<Record<string, string>> {
  return {
    'Content-Type': 'application/json',
    'User-Agent': 'edge-tti-webhooks',
    'webhook-id': message.id,
    'webhook-timestamp': String(nowSeconds),
    'webhook-signature': await signWebhook(secret, message.id, nowSeconds, message.body),
  }
}

/** Seconds before retry `attempt` (1-based) of a delivery: doubling from `base`, at most 1 h. */
export function webhookBackoffSeconds(attempt: number, base: number): number {
  return Math.min(3600, base * 2 ** Math.max(0, attempt - 1))
}

/** Whether private, loopback and link-local targets are allowed (local development, tests). */
export function allowsPrivateTargets(env: object): boolean {
  const v = (env as { WEBHOOK_PRIVATE_TARGETS?: string }).WEBHOOK_PRIVATE_TARGETS
  return (v ?? '').trim() === 'allow'
}

/**
 * Why `value` cannot be a webhook target, or undefined when it can. Names are checked as they are
 * written: a public name that resolves to a private address is left to the platform (Workers'
 * `fetch` does not reach private networks).
 */
export function webhookTargetProblem(value: string, allowPrivate: boolean): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'must be an absolute http(s) URL'
  }
  if (url.username || url.password) return 'must not carry credentials'
  if (allowPrivate) {
    return url.protocol === 'https:' || url.protocol === 'http:'
      ? undefined
      : 'must be an http(s) URL'
  }
  if (url.protocol !== 'https:') return 'must be an https URL'
  if (isPrivateHost(url.hostname))
    return 'must not point at a private, loopback or link-local address'
  return undefined
}

/** Whether a URL's hostname names this machine or a private network. */
function isPrivateHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '')
  if (host === 'localhost' || /\.(localhost|local|internal|home\.arpa)$/.test(host)) return true
  const v4 = host.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)$/)
  if (v4) return isPrivateV4(v4.slice(1).map(Number))
  if (host.startsWith('[')) {
    const v6 = host.slice(1, -1)
    // IPv4-mapped (::ffff:a.b.c.d, which URL writes as ::ffff:xxxx:xxxx) and the special ranges.
    const mapped = v6.match(/^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/)
    if (mapped) {
      const [hi, lo] = mapped.slice(1).map((h) => parseInt(h, 16))
      return isPrivateV4([hi >> 8, hi & 255, lo >> 8, lo & 255])
    }
    return (
      v6 === '::' ||
      v6 === '::1' ||
      /^f[cd][0-9a-f]{2}:/.test(v6) || // fc00::/7 unique local
      /^fe[89ab][0-9a-f]:/.test(v6) // fe80::/10 link-local
    )
  }
  return false
}

/** RFC 1918 / 6598 / 3927 / 1122 ranges, loopback and multicast and above. */
function isPrivateV4([a, b]: number[]): boolean {
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    a >= 224
  )
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0')
}

function toBase64(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s)
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const s = atob(text)
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}
