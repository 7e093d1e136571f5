/**
 * Browser entry for the pipeline test: the unchanged `src/pipeline` over onnxruntime-web,
 * loading a model folder over HTTP. The test driver calls `runGolden(caseUrl, providers)`.
 */
import * as ort from 'onnxruntime-web'
import { createWebBackend } from '../../src/gpu/ort-web'
import { loadModel } from '../../src/pipeline/model'
import { fetchSource } from '../../src/pipeline/model-source'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { goldenParams } from './golden-params'

/** What the page exposes to the test driver. */
type RunGolden = (
  caseUrl: string,
  providers: string,
) => Promise<{ latents: number[]; image: number[]; backend: string; webgpuAdapter: boolean }>

// The project typechecks against workers types, not the DOM; the page needs only these two.
const page = globalThis as unknown as { runGolden: RunGolden; location: { href: string } }

page.runGolden = async (caseUrl, providers) => {
  const ref = (await (await fetch(new URL(caseUrl, page.location.href))).json()) as any
  const backend = createWebBackend('browser', providers, { wasmPaths: '/ort/' })
  const model = await loadModel(fetchSource(new URL('/model/', page.location.href).href), backend)
  const pipe = new StableDiffusionPipeline(model)
  const res = await pipe.generate(goldenParams(ref))
  return {
    latents: Array.from(res.latents),
    image: Array.from(res.images[0].data),
    backend: backend.name,
    // onnxruntime-web sets this only when a session has run on its WebGPU provider.
    webgpuAdapter: Boolean(ort.env.webgpu.adapter),
  }
}
