/**
 * Browser entry for the pipeline test: the unchanged `src/pipeline` over onnxruntime-web,
 * loading a model folder over HTTP. The page calls `window.runGolden(caseJson)`.
 */
import { createWebBackend } from '../../src/gpu/ort-web'
import { loadModel } from '../../src/pipeline/model'
import { fetchSource } from '../../src/pipeline/model-source'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'

declare global {
  interface Window {
    runGolden(
      caseUrl: string,
      providers: string,
    ): Promise<{ latents: number[]; image: number[]; backend: string }>
  }
}

window.runGolden = async (caseUrl, providers) => {
  const ref = await (await fetch(caseUrl)).json()
  const backend = createWebBackend('browser', providers, { wasmPaths: '/ort/' })
  const pipe = new StableDiffusionPipeline(
    await loadModel(fetchSource(new URL('/model/', location.href).href), backend),
  )
  const inp = ref.inputs
  const res = await pipe.generate({
    prompt: inp.prompt,
    negativePrompt: inp.negative_prompt ?? undefined,
    seed: inp.seed,
    steps: inp.num_inference_steps,
    guidanceScale: inp.guidance_scale,
    width: inp.width,
    height: inp.height,
    scheduler: ref.scheduler.class,
    schedulerConfig: ref.scheduler.config,
  })
  return {
    latents: Array.from(res.latents),
    image: Array.from(res.images[0].data),
    backend: backend.name,
  }
}
