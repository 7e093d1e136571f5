/**
 * @module
 * Models that live only on a GPU backend (a full-size Stable Diffusion export, gigabytes of
 * weights). The edge never loads their sessions: it learns what it must to validate, tokenize
 * and key a request (the model's spec, limits and defaults, and its tokenizer files, ~2 MB for
 * CLIP) from the backend's signed manifest, keeps it per isolate and in KV (by id and digest, so
 * a new export is a new entry), and sends token ids with every job (its text encoder runs there).
 */
import type { ModelSpec } from '../pipeline/model'
import { ClipTokenizer, type ClipTokenizerFiles } from '../pipeline/tokenizer'
import { HEADERS, signRequest, verifyResponse } from '../backend/protocol'
import type { HealthStore } from './health'

/** A model known from its manifest: enough to validate, tokenize and key requests. */
export interface ManifestModel {
  readonly spec: ModelSpec
  tokenize(text: string, truncate?: boolean): ReturnType<ClipTokenizer['encodeForModel']>
}

/** What `GET /v1/models/{id}/manifest` answers (signed; see `verifyResponse`). */
export interface ModelManifest {
  spec: ModelSpec
  tokenizer: ClipTokenizerFiles
}

/** The manifest path of a model on a backend. */
export function manifestPath(id: string): string {
  return `/v1/models/${encodeURIComponent(id)}/manifest`
}

/** Builds the model from a manifest. */
export function manifestModel(manifest: ModelManifest): ManifestModel {
  const tokenizer = ClipTokenizer.fromFiles(manifest.tokenizer)
  return {
    spec: manifest.spec,
    tokenize: (text, truncate = true) => tokenizer.encodeForModel(text, { truncate }),
  }
}

/** KV key of a cached manifest. */
const kvKey = (id: string, digest: string) => `manifest:${id}:${digest}`

/**
 * The manifest of model `id` at `digest`: from KV when cached there, else fetched (signed) from
 * `base` and its signature checked, then cached. Throws when the backend does not serve that
 * digest or the answer is not authentic.
 */
export async function fetchManifest(options: {
  base: string
  id: string
  digest: string
  secret: string
  fetch: (input: string, init: RequestInit) => Promise<Response>
  store?: HealthStore
  timeoutMs?: number
}): Promise<ModelManifest> {
  const { base, id, digest, secret, store } = options
  const cached = (await store?.get(kvKey(id, digest), 'json').catch(() => null)) as
    | ModelManifest
    | null
    | undefined
  if (cached) return cached
  const path = manifestPath(id)
  const ts = Date.now()
  const res = await options.fetch(new URL(path, base).toString(), {
    headers: {
      [HEADERS.timestamp]: String(ts),
      [HEADERS.signature]: await signRequest(secret, ts, path, new Uint8Array(0)),
    },
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
  })
  const body = new Uint8Array(await res.arrayBuffer())
  if (!res.ok) throw new Error(`GPU backend ${base} answered ${res.status} for ${path}`)
  const check = await verifyResponse(
    secret,
    {
      timestamp: res.headers.get(HEADERS.timestamp),
      signature: res.headers.get(HEADERS.signature),
    },
    path,
    body,
  )
  if (check !== 'ok')
    throw new Error(`GPU backend ${base}: the manifest of ${id} has a signature that is ${check}`)
  const manifest = JSON.parse(new TextDecoder().decode(body)) as ModelManifest
  if (manifest.spec?.id !== id || manifest.spec.digest !== digest)
    throw new Error(`GPU backend ${base} sent the manifest of another model for ${id}`)
  await store?.put(kvKey(id, digest), JSON.stringify(manifest)).catch(() => undefined)
  return manifest
}
