/**
 * @module
 * Chooses how this isolate generates images. With no GPU backend configured (the embedded
 * default), the whole pipeline runs here on WebAssembly over the bundled model, so `npm start`
 * works with nothing else running. The engine is built once per isolate and reused.
 */
import { bundledModelSource, BUNDLED_MODEL_ID } from '../models/bundled'
import { createPipelineEngine } from '../pipeline/engine'
import { loadModel } from '../pipeline/model'
import { StableDiffusionPipeline } from '../pipeline/stable-diffusion'
import type { TextToImageEngine } from './engine-types'
import { createWasmBackend } from './ort-wasm'

let engine: Promise<TextToImageEngine> | undefined

/** The isolate's engine (WebAssembly pipeline over the bundled model), loaded on first use. */
export function getEngine(_env?: unknown): Promise<TextToImageEngine> {
  engine ??= (async () => {
    const model = await loadModel(bundledModelSource(), createWasmBackend())
    return createPipelineEngine([{ id: BUNDLED_MODEL_ID, pipeline: new StableDiffusionPipeline(model) }])
  })().catch((e) => {
    engine = undefined // let the next request retry a failed load
    throw e
  })
  return engine
}
