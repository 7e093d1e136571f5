/**
 * @module
 * API keys: `tti_` + base64url(32 random bytes). Only the key's SHA-256 is stored (KV
 * `keys/<id>`, where the id is the first 16 hex digits of that hash); the stored hash is compared
 * with `crypto.subtle.timingSafeEqual`. Revocation is written to the key's `KeyGuard` Durable
 * Object first (strongly consistent, immediate everywhere) and then to KV (eventually consistent).
 * Each record also holds the key's embed secret (32 random bytes, base64url): the HMAC key of its
 * signed embed URLs (`src/embeds`). It is drawn independently of the key, never shown, and
 * deleted when the key is revoked. Its webhook secret (`whsec_…`, Standard Webhooks) signs the
 * webhooks of its jobs; it is shown when the key is created or the secret rotated, and deleted on
 * revocation too.
 */
// A namespace import lets esbuild drop the zod exports (locales…) nobody uses.
import * as z from 'zod'
import { ProblemError, throwFieldErrors, type FieldError } from '../problem'
import { fieldErrors } from '../schema'
import { base64url, sha256Hex } from '../util'
import { generateWebhookSecret } from '../webhooks/webhooks'

/**
 * Scopes a key can hold: `generate` for POST /v1/images, `read` for GET /v1/models, `embed` for
 * minting signed embed URLs (POST /v1/embeds) whose generations are charged to the key.
 */
export const SCOPES = Object.freeze(['generate', 'read', 'embed'] as const)

/** One key scope. */
export type Scope = (typeof SCOPES)[number]

/** Token bucket of a key: at most `burst` images, refilled evenly over `period_seconds`. */
export interface RateLimitPolicy {
  burst: number
  period_seconds: number
}

/** What the API shows about a key (never the key or its hash). */
export interface PublicKeyRecord {
  id: string
  name: string
  scopes: Scope[]
  created_at: string
  revoked_at?: string
  /** Per-key quota; the deployment default applies when absent. */
  rate_limit?: RateLimitPolicy
}

/** The stored key record: the public part plus the key's SHA-256 (hex) and embed secret. */
export interface ApiKeyRecord extends PublicKeyRecord {
  hash: string
  /** HMAC key of the key's embed URLs (base64url); absent once revoked. */
  embed_secret?: string
  /** Signs the webhooks of the key's jobs (`whsec_…`); absent once revoked or on older keys. */
  webhook_secret?: string
}

/** A key's revocation flag and token bucket, read together (`KeyGuard.check`). */
export interface KeyState {
  revoked: boolean
  /** The bucket as last stored (`tokens` at `updatedAt`, ms); absent until the first charge. */
  bucket?: { tokens: number; updatedAt: number }
}

/** The revocation side of a key's Durable Object. */
export interface RevocationFlag {
  check(): Promise<KeyState>
  revoke(): Promise<void>
}

/** What key operations need: the KV namespace and a way to reach a key's revocation flag. */
export interface KeyDeps {
  kv: Pick<KVNamespace, 'get' | 'put' | 'list'>
  guard: (id: string) => RevocationFlag
}

const KEY_PREFIX = 'tti_'
const KEY_PATTERN = /^tti_[A-Za-z0-9_-]{43}$/
const RECORD_PREFIX = 'keys/'

/** Draws a new API key: 256 random bits, base64url, with the `tti_` prefix. */
export function generateApiKey(): string {
  return KEY_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)))
}

/** Compares two equal-length hex digests in constant time. */
export function digestsEqual(a: string, b: string): boolean {
  const enc = new TextEncoder()
  const x = enc.encode(a)
  const y = enc.encode(b)
  // Both are SHA-256 hex (64 bytes); unequal lengths can only mean a corrupt record.
  if (x.byteLength !== y.byteLength) return false
  return crypto.subtle.timingSafeEqual(x, y)
}

/** Fields of POST /v1/keys. */
export interface CreateKeyInput {
  name: string
  scopes: Scope[]
  rate_limit?: RateLimitPolicy
}

const NAME_DETAIL = 'must be a string of at most 100 characters'
const SCOPES_DETAIL = `must be a non-empty subset of ${SCOPES.join(', ')}`
const RATE_LIMIT_DETAIL = 'must be {burst: 1..100000, period_seconds: 1..86400} (integers)'

const boundedInt = (max: number, description: string) =>
  z
    .number({ error: RATE_LIMIT_DETAIL })
    .int({ error: RATE_LIMIT_DETAIL })
    .min(1, { error: RATE_LIMIT_DETAIL })
    .max(max, { error: RATE_LIMIT_DETAIL })
    .meta({ description })

/** A key's own quota, as sent to POST /v1/keys and shown in key records. */
export const RateLimitPolicySchema = z
  .strictObject(
    {
      burst: boundedInt(100_000, 'Most images the key may request at once (bucket size).'),
      period_seconds: boundedInt(86_400, 'Seconds to refill the whole bucket.'),
    },
    { error: RATE_LIMIT_DETAIL },
  )
  .meta({
    description: 'Token bucket: at most `burst` images, refilled evenly over `period_seconds`.',
  })

/** The POST /v1/keys body; every field is optional. */
export const CreateKeyBody = z
  .strictObject(
    {
      name: z
        .string({ error: NAME_DETAIL })
        .max(100, { error: NAME_DETAIL })
        .optional()
        .meta({ description: 'A label for people.', default: 'unnamed', example: 'my-site' }),
      scopes: z
        .array(z.enum(SCOPES, { error: SCOPES_DETAIL }), { error: SCOPES_DETAIL })
        .min(1, { error: SCOPES_DETAIL })
        .optional()
        .meta({
          description:
            '`generate` for image generation, `read` for GET /v1/models, `embed` for minting signed embed URLs.',
          default: [...SCOPES],
        }),
      rate_limit: RateLimitPolicySchema.optional(),
    },
    { error: 'must be a JSON object' },
  )
  .meta({ description: 'Body of POST /v1/keys.' })

/** Validates a POST /v1/keys body (all fields optional); throws 422 naming bad fields. */
export function parseCreateKeyInput(body: unknown): CreateKeyInput {
  const parsed = CreateKeyBody.safeParse(body)
  if (!parsed.success) {
    // One error per top-level field (`scopes`, not `scopes.0`): the field is what callers fix.
    const byField = new Map<string, FieldError>()
    for (const e of fieldErrors(parsed.error.issues)) {
      const [field] = e.field.split('.')
      const detail =
        field === 'rate_limit' ? RATE_LIMIT_DETAIL : field === 'scopes' ? SCOPES_DETAIL : e.detail
      if (!byField.has(field)) byField.set(field, { field, detail })
    }
    throwFieldErrors([...byField.values()])
  }
  const { name = 'unnamed', scopes = [...SCOPES], rate_limit } = parsed.data
  return { name, scopes: [...new Set(scopes)], ...(rate_limit ? { rate_limit } : {}) }
}

/**
 * Creates and stores a key; returns the key itself (shown once), its webhook secret and its
 * public record.
 */
export async function createKey(
  deps: KeyDeps,
  input: CreateKeyInput,
): Promise<{ key: string; webhookSecret: string; record: PublicKeyRecord }> {
  let key: string
  let hash: string
  do {
    key = generateApiKey()
    hash = await sha256Hex(key)
    // Ids are 64-bit hash prefixes: never let a (vanishingly unlikely) collision overwrite a key.
  } while (await getRecord(deps.kv, hash.slice(0, 16)))
  const record: ApiKeyRecord = {
    id: hash.slice(0, 16),
    name: input.name,
    scopes: [...input.scopes],
    created_at: new Date().toISOString(),
    hash,
    ...(input.rate_limit ? { rate_limit: input.rate_limit } : {}),
    // Independent of the key itself, so embed URLs reveal nothing about either.
    embed_secret: base64url(crypto.getRandomValues(new Uint8Array(32))),
    webhook_secret: generateWebhookSecret(),
  }
  await putRecord(deps.kv, record)
  return { key, webhookSecret: record.webhook_secret!, record: toPublic(record) }
}

/**
 * Draws a new webhook secret for a key (the old one stops signing at once: deliveries read the
 * secret when they are sent). Throws 404 for an unknown or revoked key.
 */
export async function rotateWebhookSecret(
  deps: Pick<KeyDeps, 'kv'>,
  id: string,
): Promise<{ id: string; webhook_secret: string }> {
  const record = await getRecord(deps.kv, id)
  if (!record || record.revoked_at)
    throw new ProblemError('not-found', { detail: `no active API key with id ${id}` })
  record.webhook_secret = generateWebhookSecret()
  await putRecord(deps.kv, record)
  return { id, webhook_secret: record.webhook_secret }
}

/** Lists every key's public record. */
export async function listKeys(deps: Pick<KeyDeps, 'kv'>): Promise<PublicKeyRecord[]> {
  const out: PublicKeyRecord[] = []
  let cursor: string | undefined
  do {
    const page = await deps.kv.list<PublicKeyRecord>({ prefix: RECORD_PREFIX, cursor })
    for (const k of page.keys) if (k.metadata) out.push(k.metadata)
    cursor = page.list_complete ? undefined : page.cursor
  } while (cursor)
  return out.sort((a, b) => a.created_at.localeCompare(b.created_at))
}

/** Revokes a key: the Durable Object flag first (immediate), then the KV record. */
export async function revokeKey(deps: KeyDeps, id: string): Promise<PublicKeyRecord> {
  const record = await getRecord(deps.kv, id)
  if (!record) throw new ProblemError('not-found', { detail: `no API key with id ${id}` })
  await deps.guard(id).revoke()
  if (!record.revoked_at || record.embed_secret || record.webhook_secret) {
    record.revoked_at ??= new Date().toISOString()
    // The secrets die with the key: its embed URLs never verify again, no webhook is signed.
    delete record.embed_secret
    delete record.webhook_secret
    await putRecord(deps.kv, record)
  }
  return toPublic(record)
}

/**
 * Resolves a presented key to its record. Throws 401 `unauthorized` for a missing, malformed or
 * unknown key and 403 `key-revoked` for a revoked one.
 */
export async function authenticate(
  deps: KeyDeps,
  presented: string | undefined,
): Promise<{ record: ApiKeyRecord; state: KeyState }> {
  if (!presented) throw unauthorized('missing API key (send Authorization: Bearer tti_...)')
  if (!KEY_PATTERN.test(presented)) throw unauthorized('malformed API key')
  const hash = await sha256Hex(presented)
  const record = await getRecord(deps.kv, hash.slice(0, 16))
  if (!record || !digestsEqual(hash, record.hash)) throw unauthorized('invalid API key')
  if (record.revoked_at) throw new ProblemError('key-revoked')
  const state = await deps.guard(record.id).check()
  if (state.revoked) throw new ProblemError('key-revoked')
  return { record, state }
}

/** The stored record of a key id, or null for an unknown id (no revocation check). */
export function findKey(deps: Pick<KeyDeps, 'kv'>, id: string): Promise<ApiKeyRecord | null> {
  return getRecord(deps.kv, id)
}

/** A 401 `unauthorized` problem with its `WWW-Authenticate` challenge. */
export function unauthorized(detail: string): ProblemError {
  return new ProblemError('unauthorized', {
    detail,
    headers: { 'WWW-Authenticate': 'Bearer realm="edge-tti"' },
  })
}

async function getRecord(kv: KeyDeps['kv'], id: string): Promise<ApiKeyRecord | null> {
  if (!/^[0-9a-f]{16}$/.test(id)) return null
  return kv.get<ApiKeyRecord>(RECORD_PREFIX + id, 'json')
}

async function putRecord(kv: KeyDeps['kv'], record: ApiKeyRecord): Promise<void> {
  await kv.put(RECORD_PREFIX + record.id, JSON.stringify(record), { metadata: toPublic(record) })
}

function toPublic({
  hash: _hash,
  embed_secret: _embed,
  webhook_secret: _webhook,
  ...rest
}: ApiKeyRecord): PublicKeyRecord {
  return rest
}
