/**
 * @module
 * The golden conditioner models (../shared/golden, through the GOLDEN service binding of
 * vitest.config.mts) served beside the bundled one, so API tests inside workerd can generate
 * image-to-image, inpainting and ControlNet images and compare them with diffusers' pixels.
 */
import { env } from 'cloudflare:test'
import { createPipelineEngine } from '../../src/engine/local-engine'
import { installEngineProvider } from '../../src/engine/provider'
import { createWasmBackend } from '../../src/gpu/ort-wasm'
import { loadModel } from '../../src/pipeline/model'
import { fetchSource } from '../../src/pipeline/model-source'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'

const golden = (env as unknown as { GOLDEN: Fetcher }).GOLDEN

/** Bytes of a golden file. */
export async function goldenBytes(path: string): Promise<Uint8Array> {
  return new Uint8Array(await (await golden.fetch(`http://golden/${path}`)).arrayBuffer())
}

/** A golden JSON file, parsed. */
export async function goldenJson(path: string): Promise<any> {
  return (await golden.fetch(`http://golden/${path}`)).json()
}

/** Standard base64 of bytes. */
export function base64(b: Uint8Array): string {
  let s = ''
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000))
  return btoa(s)
}

/** The golden models served next to the bundled one (its id stays the default). */
export const GOLDEN_MODELS = Object.freeze([
  'tiny-sd-img2img',
  'tiny-sd-inpaint',
  'tiny-sd-controlnet',
])

let pipelines: Promise<StableDiffusionPipeline[]> | undefined

/** Installs an engine serving the bundled model and the golden ones; returns the undo. */
export async function installGoldenModels(): Promise<() => void> {
  const backend = createWasmBackend()
  pipelines ??= Promise.all(
    GOLDEN_MODELS.map(
      async (m) =>
        new StableDiffusionPipeline(
          await loadModel(
            fetchSource(`http://golden/pipeline/${m}/`, (u) => golden.fetch(u)),
            backend,
          ),
        ),
    ),
  )
  const extra = createPipelineEngine(await pipelines)
  const own = (model: string) => extra.models().some((m) => m.id === model)
  const previous = installEngineProvider(async (e) => {
    const bundled = await previous!(e)
    return {
      models: () => [...bundled.models(), ...extra.models()],
      tokenize: (model, text) =>
        own(model) ? extra.tokenize(model, text) : bundled.tokenize(model, text),
      generate: (req, opts) =>
        own(req.model) ? extra.generate(req, opts) : bundled.generate(req, opts),
    }
  })
  return () => {
    if (previous) installEngineProvider(previous)
  }
}
