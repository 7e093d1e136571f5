/**
 * @module
 * A `TextToImageEngine` over local pipelines: maps API requests onto `StableDiffusionPipeline`
 * (`toPipelineParams`, the one such mapping), encodes PNGs with their generation parameters, and
 * reports each model's defaults and limits. Used by the in-isolate WebAssembly path and by the
 * GPU backend service alike, so both generate through the same code.
 */
import { MODEL_LIMITS, type ModelSpec } from '../pipeline/model'
import { OPTION_DEFAULTS, OPTION_NAMES } from './options'
import { encodePng, formatParameters } from '../pipeline/png'
import { SCHEDULER_NAMES } from '../pipeline/schedulers'
import type {
  GenerateParams,
  GenerateResult,
  StableDiffusionPipeline,
} from '../pipeline/stable-diffusion'
import type {
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  InputPicture,
  ModelInfo,
  TextToImageEngine,
  TokenizedPrompt,
} from './types'

/** Describes a served model for `/v1/models` and request validation. */
export function describeModel(model: { spec: ModelSpec }): ModelInfo {
  const s = model.spec
  const { maxSizeFactor, ...bounds } = MODEL_LIMITS
  return {
    id: s.id,
    digest: s.digest,
    maxPromptTokens: s.tokenWindow - 2,
    defaults: {
      steps: s.defaults.steps,
      guidance_scale: s.defaults.guidanceScale,
      scheduler: s.defaults.scheduler,
      width: s.defaults.width,
      height: s.defaults.height,
    },
    limits: {
      maxWidth: s.sampleSize * maxSizeFactor,
      maxHeight: s.sampleSize * maxSizeFactor,
      sizeMultiple: s.sizeMultiple,
      ...bounds,
    },
    schedulers: SCHEDULER_NAMES,
    options: OPTION_NAMES,
    conditioning: conditioningOf(s),
    schedulerConfig: s.schedulerConfig,
    ...(s.knownWords ? { knownWords: s.knownWords } : {}),
  }
}

/** Per picture field, whether the model takes it, else why not (from the spec). */
function conditioningOf(s: ModelSpec): ModelInfo['conditioning'] {
  const c = s.conditioners
  const why = (v: true | string | { reason: string }) =>
    v === true || typeof v === 'string' ? true : v.reason
  return {
    text: why(c.textToImage),
    image: why(c.imageToImage === true || typeof c.inpainting === 'string' ? true : c.imageToImage),
    mask: why(c.inpainting),
    control_image: why(c.controlNet),
  }
}

/**
 * The pipeline parameters of a request: the one mapping from the API's request to the pipeline.
 * A new request field is added to `GenerateRequest`, here, and to the pipeline.
 */
export function toPipelineParams(req: GenerateRequest): GenerateParams {
  return {
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
    guidanceRescale: req.options.guidance_rescale ?? OPTION_DEFAULTS.guidance_rescale,
    image: rgb(req.pictures?.image),
    mask: req.pictures?.mask,
    controlImage: rgb(req.pictures?.control_image),
    strength: req.options.strength,
    maskOverlay: req.options.mask_overlay,
    controlScale: req.options.control_scale,
    controlStart: req.options.control_start,
    controlEnd: req.options.control_end,
  }
}

const rgb = (p: InputPicture | undefined) => p && { width: p.width, height: p.height, data: p.data }

/** The conditioning a PNG records: the settings and the pictures' hashes, never their bytes. */
function conditioningParameters(
  req: GenerateRequest,
  p: GenerateResult['params'],
): [string, string | number][] {
  const out: [string, string | number][] = []
  const { image, mask, control_image: control } = req.pictures ?? {}
  if (image) out.push(['Init image', image.sha256], ['Denoising strength', p.strength])
  if (mask) out.push(['Mask', mask.sha256])
  if (control)
    out.push(
      ['Control image', control.sha256],
      ['Control scale', p.controlScale],
      ['Control window', `${p.controlStart}-${p.controlEnd}`],
    )
  return out
}

/** Text encoder states computed elsewhere (the edge, for a GPU backend): skip the encoder. */
export interface PromptEmbeddings {
  prompt: Float32Array
  negative?: Float32Array
}

/** A local engine; `generate` may also take precomputed prompt embeddings. */
export interface LocalEngine extends TextToImageEngine {
  /** The pipeline serving a model id; throws `RangeError` for an unknown one. */
  pipeline(model: string): StableDiffusionPipeline
  generate(
    req: GenerateRequest,
    options?: GenerateOptions & { embeddings?: PromptEmbeddings },
  ): Promise<GeneratedImage[]>
}

/** Builds an engine over one or more local pipelines; the first model is the default. */
export function createPipelineEngine(pipelines: readonly StableDiffusionPipeline[]): LocalEngine {
  const byId = new Map(pipelines.map((p) => [p.spec.id, p]))
  const infos = Object.freeze(pipelines.map(describeModel))
  const pipeline = (id: string) => {
    const p = byId.get(id)
    if (!p) throw new RangeError(`unknown model ${JSON.stringify(id)}`)
    return p
  }
  return {
    pipeline,
    models: () => infos,
    tokenize(model, text): TokenizedPrompt {
      const enc = pipeline(model).tokenize(text, true)
      return { inputIds: enc.inputIds, nTokens: enc.nTokens, truncated: enc.truncated }
    },
    async generate(req, options = {}): Promise<GeneratedImage[]> {
      const pipe = pipeline(req.model)
      const result = await pipe.generate(
        {
          ...toPipelineParams(req),
          promptEmbeds: options.embeddings?.prompt,
          negativePromptEmbeds: options.embeddings?.negative,
        },
        {
          signal: options.signal,
          onStep: (p) => options.onProgress?.({ step: p.step, totalSteps: p.totalSteps, image: 0 }),
        },
      )
      return result.images.map((image, i) => ({
        bytes: encodePng(image, {
          // Only what determined the image: the text the model saw, never what truncation cut
          // (a cache hit hands this PNG to every caller whose prompt shares the window).
          parameters: formatParameters({
            prompt: pipe.textSeen(req.prompt, req.truncate),
            negativePrompt: pipe.textSeen(req.negativePrompt, req.truncate),
            steps: req.steps,
            scheduler: req.scheduler,
            guidanceScale: req.guidanceScale,
            seed: req.seed + i,
            width: req.width,
            height: req.height,
            model: req.model,
            modelDigest: pipe.spec.digest,
            extra: conditioningParameters(req, result.params),
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
