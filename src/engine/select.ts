/**
 * @module
 * Chooses how this isolate generates images, once per isolate:
 * - `GPU_BACKEND_URLS` (comma-separated) and the `GPU_BACKEND_SECRET` secret set: the text
 *   encoder runs here and the denoising loop and VAE decode run on the GPU backend service,
 *   reached by URL or through the `GPU_BACKEND` service binding when one is bound; backends are
 *   ordered by the Cron Trigger's probes in the `GPU_HEALTH` KV (`recordBackendHealth`), and each
 *   model's text encoder runs here or there as `./placement` decides (`GPU_TEXT_ENCODER`);
 * - otherwise (the embedded default) the whole pipeline runs here on WebAssembly over the
 *   bundled model, so `npm start` works with nothing else running.
 * Either way, the `HF_TOKEN` secret with `HF_MODELS` adds hosted models (`hf:<id>`) whose
 * generations go to Hugging Face Inference Providers (see `./hosted-models`).
 */
import { bundledModelSource, type ModelFiles } from '../models/bundled'
import { fetchManifest, manifestModel, type ManifestModel } from './backend-models'
import { createPipelineEngine } from './local-engine'
import { loadModel } from '../pipeline/model'
import { StableDiffusionPipeline } from '../pipeline/stable-diffusion'
import type { TextToImageEngine } from './types'
import {
  probeBackend,
  readHealth,
  writeHealth,
  type HealthRecord,
  type HealthStore,
} from './health'
import { textEncoderBytes, textEncoderPlacement } from './placement'
import { createHostedEngine, withHostedModels } from './hosted-engine'
import { hostedConfig, type HostedEnv } from './hosted-models'
import { createWasmBackend } from '../gpu/ort-wasm'
import { createRemoteEngine, type RemoteServable } from './remote-engine'
import { EDGE_QUEUE, withQueue } from './queue'

/** The bindings that select and reach a GPU backend. */
export interface EngineEnv extends HostedEnv {
  GPU_BACKEND_URLS?: string
  GPU_BACKEND_SECRET?: string
  GPU_BACKEND_TIMEOUT_MS?: string
  /** Text encoder placement overrides: `edge`, `backend`, or `model=backend,…` (`./placement`). */
  GPU_TEXT_ENCODER?: string
  GPU_BACKEND?: { fetch(input: string, init?: RequestInit): Promise<Response> }
  /** KV where the Cron Trigger records backend health for every isolate. */
  GPU_HEALTH?: HealthStore
  /** The static assets holding the bundled model's files (wrangler.toml `[assets]`). */
  MODEL_FILES?: ModelFiles
}

/** Shared probes are re-read from KV at most this often per isolate. */
const HEALTH_READ_MS = 5_000

/** The configured backend URLs, in order. */
function backendUrls(env: EngineEnv): string[] {
  return (env.GPU_BACKEND_URLS ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
}

/** `fetch` through the service binding when one is bound, else the global one. */
function backendFetch(env: EngineEnv): (u: string, i: RequestInit) => Promise<Response> {
  const binding = env.GPU_BACKEND
  return binding ? (u, i) => binding.fetch(u, i) : (u, i) => fetch(u, i)
}

/**
 * Probes every configured backend's `/healthz` and records the results in `GPU_HEALTH`, where
 * every isolate's request path reads them. Run by the Cron Trigger; a no-op without backends.
 */
export async function recordBackendHealth(
  env: EngineEnv,
): Promise<Record<string, HealthRecord> | undefined> {
  const urls = backendUrls(env)
  if (!urls.length) return undefined
  const doFetch = backendFetch(env)
  const records = Object.fromEntries(
    await Promise.all(urls.map(async (u) => [u, await probeBackend(u, doFetch)] as const)),
  )
  if (env.GPU_HEALTH) await writeHealth(env.GPU_HEALTH, records)
  return records
}

let models: Promise<StableDiffusionPipeline[]> | undefined
/** The isolate's engines by configuration; one built while a backend was unreachable expires. */
const engines = new Map<string, { engine: TextToImageEngine; until: number }>()

/** How long an engine built without every backend's models is used before asking again. */
const INCOMPLETE_ENGINE_MS = 30_000

/** The bundled model, loaded on WebAssembly once per isolate (a failed load is retried). */
function bundledModels(env: EngineEnv): Promise<StableDiffusionPipeline[]> {
  models ??= loadModel(bundledModelSource(env.MODEL_FILES), createWasmBackend())
    .then((model) => [new StableDiffusionPipeline(model)])
    .catch((e) => {
      models = undefined
      throw e
    })
  return models
}

/**
 * The models the backends serve beyond the bundled ones, from their manifests (KV-cached by id
 * and digest). `complete` is false when a backend could not be asked, so the caller looks again.
 */
async function backendModels(
  env: EngineEnv,
  urls: readonly string[],
  bundled: readonly StableDiffusionPipeline[],
): Promise<{ models: ManifestModel[]; complete: boolean }> {
  const doFetch = backendFetch(env)
  const known = new Set(bundled.map((m) => m.spec.id))
  const models: ManifestModel[] = []
  let complete = true
  for (const base of urls) {
    const record = await probeBackend(base, doFetch)
    if (!record.healthy) {
      complete = false
      continue
    }
    for (const { id, digest } of record.models ?? []) {
      if (known.has(id)) continue
      try {
        const manifest = await fetchManifest({
          base,
          id,
          digest,
          secret: env.GPU_BACKEND_SECRET as string,
          fetch: doFetch,
          store: env.GPU_HEALTH,
        })
        models.push(manifestModel(manifest))
        known.add(id)
      } catch (e) {
        console.warn(`model ${id} on ${base} is not served: ${(e as Error).message}`)
        complete = false
      }
    }
  }
  return { models, complete }
}

/** The isolate's engine for this environment. */
export async function getEngine(env: EngineEnv = {}): Promise<TextToImageEngine> {
  const urls = backendUrls(env)
  const hosted = hostedConfig(env)
  const key =
    (urls.length && env.GPU_BACKEND_SECRET
      ? `remote:${urls.join(',')}:${env.GPU_TEXT_ENCODER ?? ''}`
      : 'local') + (hosted ? `|hosted:${hosted.key}` : '')
  const cached = engines.get(key)
  if (cached && Date.now() < cached.until) return cached.engine
  const served = await bundledModels(env)
  let engine: TextToImageEngine
  let complete = true
  // The isolate runs one generation at a time (ORT WebAssembly is serial), the rest in FIFO order.
  if (!urls.length || !env.GPU_BACKEND_SECRET)
    engine = withQueue(createPipelineEngine(served), EDGE_QUEUE)
  else {
    const store = env.GPU_HEALTH
    let read: { at: number; value: Promise<Record<string, HealthRecord>> } | undefined
    const discovered = await backendModels(env, urls, served)
    complete = discovered.complete
    const models: RemoteServable[] = [...served, ...discovered.models]
    engine = createRemoteEngine(models, {
      urls,
      secret: env.GPU_BACKEND_SECRET as string,
      timeoutMs: env.GPU_BACKEND_TIMEOUT_MS ? Number(env.GPU_BACKEND_TIMEOUT_MS) : undefined,
      fetch: backendFetch(env),
      textEncoder: Object.fromEntries(
        models.map((m) => [
          m.spec.id,
          // A model known only from its manifest has no encoder here: it runs on the backend.
          m.encodePrompt
            ? textEncoderPlacement(m.spec.id, textEncoderBytes(m.spec), env.GPU_TEXT_ENCODER)
            : 'backend',
        ]),
      ),
      health: store
        ? () => {
            if (!read || Date.now() - read.at > HEALTH_READ_MS)
              read = { at: Date.now(), value: readHealth(store) }
            return read.value
          }
        : undefined,
    })
  }
  if (hosted) engine = withHostedModels(engine, await createHostedEngine(hosted))
  // A backend that did not answer may serve more models: look again after a while (not on
  // every request: each look probes the unreachable backend again).
  engines.set(key, { engine, until: complete ? Infinity : Date.now() + INCOMPLETE_ENGINE_MS })
  return engine
}
