/**
 * Deno entry for the pipeline test: the unchanged `src/pipeline` over onnxruntime-web on
 * WebAssembly, reading the model and onnxruntime's .wasm through `file://` fetches.
 * Usage: deno run --allow-read bundle.mjs <model dir URL> <ort dist URL> <case JSON path>
 */
import { createWebBackend } from '../../src/gpu/ort-web'
import { loadModel } from '../../src/pipeline/model'
import { fetchSource } from '../../src/pipeline/model-source'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { goldenParams } from './golden-params'

declare const Deno: { args: string[]; readTextFile(p: string): Promise<string> }

const [modelUrl, ortUrl, casePath] = Deno.args
const ref = JSON.parse(await Deno.readTextFile(casePath))
const backend = createWebBackend('deno', 'wasm', { wasmPaths: ortUrl })
const pipe = new StableDiffusionPipeline(await loadModel(fetchSource(modelUrl), backend))
const res = await pipe.generate(goldenParams(ref))
console.log(
  JSON.stringify({
    backend: backend.name,
    latents: Array.from(res.latents),
    image: Array.from(res.images[0].data),
  }),
)
