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
  }
}
