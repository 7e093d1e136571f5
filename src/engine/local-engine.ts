/**
 * @module
 * A `TextToImageEngine` over local pipelines: maps API requests onto `StableDiffusionPipeline`,
 * encodes PNGs with their generation parameters, and reports each model's defaults and limits.
 * Used by the in-isolate WebAssembly path and by the GPU backend service alike.
 */
import type {
  GeneratedImage,
  GenerateRequest,
  ModelInfo,
  TextToImageEngine,
  TokenizedPrompt,
} from './types'
import { encodePng, formatParameters } from '../pipeline/png'
import { SCHEDULER_NAMES } from '../pipeline/schedulers'
import { StableDiffusionPipeline } from '../pipeline/stable-diffusion'

/** API-level bounds, tighter than the pipeline's own, so one request stays cheap. */
export const API_LIMITS = Object.freeze({
  minSteps: 1,
  maxSteps: 100,
  minGuidance: 0,
  maxGuidance: 30,
  maxImages: 4,
})

/** A served model: its public id and its pipeline. */
export interface ServedModel {
  id: string
  pipeline: StableDiffusionPipeline
}

/** Describes a served model for `/v1/models` and request validation. */
export function describeModel({ id, pipeline }: ServedModel): ModelInfo {
  const s = pipeline.spec
  return {
    id,
    digest: s.digest,
    maxPromptTokens: s.tokenWindow - 2,
    defaults: {
      steps: s.defaults.steps,
      guidance_scale: s.defaults.guidanceScale,
      scheduler: s.defaults.scheduler,
      width: s.sampleSize,
      height: s.sampleSize,
    },
    limits: {
      maxWidth: s.sampleSize,
      maxHeight: s.sampleSize,
      sizeMultiple: s.sizeMultiple,
      ...API_LIMITS,
    },
    schedulers: SCHEDULER_NAMES,
  }
}

/** Builds an engine over one or more local pipelines; the first model is the default. */
export function createPipelineEngine(models: readonly ServedModel[]): TextToImageEngine {
  const byId = new Map(models.map((m) => [m.id, m]))
  const infos = Object.freeze(models.map(describeModel))
  const get = (id: string) => {
    const m = byId.get(id)
    if (!m) throw new RangeError(`unknown model ${JSON.stringify(id)}`)
    return m
  }
  return {
    models: () => infos,
    tokenize(model, text): TokenizedPrompt {
      const enc = get(model).pipeline.tokenize(text, true)
      return { inputIds: enc.inputIds, nTokens: enc.nTokens, truncated: enc.truncated }
    },
    async generate(req: GenerateRequest, options = {}): Promise<GeneratedImage[]> {
      const { pipeline } = get(req.model)
      const result = await pipeline.generate(
        {
          prompt: req.prompt,
          negativePrompt: req.negativePrompt,
          seed: req.seed,
          steps: req.steps,
          guidanceScale: req.guidanceScale,
          width: req.width,
          height: req.height,
          scheduler: req.scheduler,
          numImages: req.n,
          truncate: req.truncate,
        },
        {
          signal: options.signal,
          onStep: (p) => options.onProgress?.({ step: p.step, totalSteps: p.totalSteps, image: 0 }),
        },
      )
      return result.images.map((image, i) => ({
        bytes: encodePng(image, {
          parameters: formatParameters({
            prompt: req.prompt,
            negativePrompt: req.negativePrompt,
            steps: req.steps,
            scheduler: req.scheduler,
            guidanceScale: req.guidanceScale,
            seed: req.seed + i,
            width: req.width,
            height: req.height,
            model: req.model,
            modelDigest: pipeline.spec.digest,
          }),
        }),
        contentType: 'image/png' as const,
        seed: req.seed + i,
        width: req.width,
        height: req.height,
      }))
    },
  }
}
