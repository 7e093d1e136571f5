/**
 * @module
 * Embed tokens in the compact JWS style: `base64url(JSON payload) "." base64url(HMAC-SHA256)`,
 * keyed with the embed secret of the API key the payload names. The MAC covers the exact
 * characters of the payload segment, so verification never re-serialises anything, and it is
 * checked with `crypto.subtle.verify` (constant time).
 *
 * @example
 * const token = await signToken(record.embed_secret, { v: 1, k: record.id, p: params })
 * const decoded = decodeToken(token) // then verifySignature(secret, decoded)
 */
import { base64url } from '../util'

/** Version of the payload layout; a token of another version never verifies. */
export const EMBED_TOKEN_VERSION = 1

/** Longest token accepted, so a forged URL can't make us decode or hash megabytes. */
export const MAX_TOKEN_LENGTH = 4096

/** The signed payload. Short member names keep URLs short; member order is fixed. */
export interface EmbedPayload {
  v: typeof EMBED_TOKEN_VERSION
  /** Id of the API key whose embed secret signed it (and whose quota pays for misses). */
  k: string
  /** Canonical POST /v1/images body: defaults filled in, seed fixed, one image. */
  p: Record<string, unknown>
  /** Expiry, unix seconds. */
  exp?: number
  /** Allowed page origins (normalised, sorted); any origin when absent. */
  o?: string[]
}

/** A token split into its parts; nothing in it is trusted until `verifySignature` says so. */
export interface DecodedToken {
  /** The payload segment as sent: the MAC input. */
  signed: string
  signature: Uint8Array
  /** The parsed payload JSON. */
  payload: unknown
}

/** Signs `payload` with a base64url embed secret; returns `payload.signature`. */
export async function signToken(secret: string, payload: EmbedPayload): Promise<string> {
  const signed = base64url(new TextEncoder().encode(JSON.stringify(payload)))
  const mac = await crypto.subtle.sign('HMAC', await hmacKey(secret), ascii(signed))
  return `${signed}.${base64url(new Uint8Array(mac))}`
}

/** Splits and decodes a token; null when it is not two canonical base64url segments of JSON. */
export function decodeToken(token: string): DecodedToken | null {
  if (token.length > MAX_TOKEN_LENGTH) return null
  const parts = token.split('.')
  if (parts.length !== 2) return null
  const [signed, sig] = parts
  const payloadBytes = fromBase64url(signed)
  const signature = fromBase64url(sig)
  if (!payloadBytes || !signature || signature.byteLength !== 32) return null
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(payloadBytes)
    return { signed, signature, payload: JSON.parse(text) }
  } catch {
    return null
  }
}

/** Whether the token's MAC is the embed secret's HMAC of its payload segment. */
export async function verifySignature(secret: string, token: DecodedToken): Promise<boolean> {
  return crypto.subtle.verify(
    'HMAC',
    await hmacKey(secret),
    token.signature as Uint8Array<ArrayBuffer>,
    ascii(token.signed),
  )
}

/**
 * Decodes unpadded base64url (RFC 4648 §5); null for anything else, including non-canonical
 * encodings, so one signature has exactly one spelling.
 */
export function fromBase64url(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) return null
  let binary: string
  try {
    binary = atob(s.replace(/-/g, '+').replace(/_/g, '/'))
  } catch {
    return null
  }
  const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0))
  return base64url(bytes) === s ? bytes : null
}

function ascii(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s) as Uint8Array<ArrayBuffer>
}

async function hmacKey(secret: string): Promise<CryptoKey> {
  const raw = fromBase64url(secret)
  if (!raw || raw.byteLength < 32) throw new Error('embed secret must be ≥ 32 bytes, base64url')
  return crypto.subtle.importKey(
    'raw',
    raw as Uint8Array<ArrayBuffer>,
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign', 'verify'],
  )
}
