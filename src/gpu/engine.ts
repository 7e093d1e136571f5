/**
 * @module
 * Chooses how this isolate generates images, once per isolate:
 * - `GPU_BACKEND_URLS` (comma-separated) and the `GPU_BACKEND_SECRET` secret set: the text
 *   encoder runs here and the denoising loop and VAE decode run on the GPU backend service,
 *   reached by URL or through the `GPU_BACKEND` service binding when one is bound;
 * - otherwise (the embedded default) the whole pipeline runs here on WebAssembly over the
 *   bundled model, so `npm start` works with nothing else running.
 * Either way, the `HF_TOKEN` secret with `HF_MODELS` adds hosted models (`hf:<id>`) whose
 * generations go to Hugging Face Inference Providers (see `./hosted-models`).
 */
import { bundledModelSource, BUNDLED_MODEL_ID } from '../models/bundled'
import { createPipelineEngine, type ServedModel } from '../pipeline/engine'
import { loadModel } from '../pipeline/model'
import { StableDiffusionPipeline } from '../pipeline/stable-diffusion'
import type { TextToImageEngine } from './engine-types'
import { createHostedEngine, withHostedModels } from './hosted-engine'
import { hostedConfig, type HostedEnv } from './hosted-models'
import { createWasmBackend } from './ort-wasm'
import { createRemoteEngine } from './remote-engine'

/** The bindings that select and reach a GPU backend. */
export interface EngineEnv extends HostedEnv {
  GPU_BACKEND_URLS?: string
  GPU_BACKEND_SECRET?: string
  GPU_BACKEND_TIMEOUT_MS?: string
  GPU_BACKEND?: { fetch(input: string, init?: RequestInit): Promise<Response> }
}

let models: Promise<ServedModel[]> | undefined
const engines = new Map<string, TextToImageEngine>()

/** The bundled model, loaded on WebAssembly once per isolate (a failed load is retried). */
function bundledModels(): Promise<ServedModel[]> {
  models ??= loadModel(bundledModelSource(), createWasmBackend())
    .then((model) => [{ id: BUNDLED_MODEL_ID, pipeline: new StableDiffusionPipeline(model) }])
    .catch((e) => {
      models = undefined
      throw e
    })
  return models
}

/** The isolate's engine for this environment. */
export async function getEngine(env: EngineEnv = {}): Promise<TextToImageEngine> {
  const urls = (env.GPU_BACKEND_URLS ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
  const hosted = hostedConfig(env)
  const key =
    (urls.length && env.GPU_BACKEND_SECRET ? `remote:${urls.join(',')}` : 'local') +
    (hosted ? `|hosted:${hosted.key}` : '')
  const cached = engines.get(key)
  if (cached) return cached
  const served = await bundledModels()
  const binding = env.GPU_BACKEND
  let engine: TextToImageEngine =
    !urls.length || !env.GPU_BACKEND_SECRET
      ? createPipelineEngine(served)
      : createRemoteEngine(served, {
          urls,
          secret: env.GPU_BACKEND_SECRET as string,
          timeoutMs: env.GPU_BACKEND_TIMEOUT_MS ? Number(env.GPU_BACKEND_TIMEOUT_MS) : undefined,
          fetch: binding ? (u, i) => binding.fetch(u, i) : undefined,
        })
  if (hosted) engine = withHostedModels(engine, await createHostedEngine(hosted))
  engines.set(key, engine)
  return engine
}
