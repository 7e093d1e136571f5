/** Maps a golden pipeline case (`pipeline/cases/<case>.json`) to pipeline parameters; runtime-neutral. */
import type { GenerateParams } from '../../src/pipeline/stable-diffusion'

/** The `StableDiffusionPipeline.generate` parameters of a golden reference case. */
export function goldenParams(ref: any): GenerateParams {
  const inp = ref.inputs
  return {
    prompt: inp.prompt,
    negativePrompt: inp.negative_prompt ?? undefined,
    seed: inp.seed,
    steps: inp.num_inference_steps,
    guidanceScale: inp.guidance_scale,
    width: inp.width,
    height: inp.height,
    scheduler: ref.scheduler.class,
    schedulerConfig: ref.scheduler.config,
    ...conditioning(ref),
  }
}

/** The conditioning of an image-to-image, inpainting or ControlNet case (`pipeline/cases-*`). */
function conditioning(ref: any): Partial<GenerateParams> {
  const inp = ref.inputs
  const picture = (p: any) => ({ width: p.width, height: p.height, data: Uint8Array.from(p.uint8) })
  if (ref.kind === 'img2img') return { image: picture(inp.image), strength: inp.strength }
  if (ref.kind === 'inpaint')
    return { image: picture(inp.image), mask: picture(inp.mask_image), strength: inp.strength }
  if (ref.kind === 'controlnet')
    return {
      controlImage: picture(inp.image),
      controlScale: inp.controlnet_conditioning_scale,
      controlStart: inp.control_guidance_start,
      controlEnd: inp.control_guidance_end,
    }
  return {}
}
