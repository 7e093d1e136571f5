/**
 * @module
 * The contract between the edge (routes, cache) and whatever generates images: the in-isolate
 * WebAssembly pipeline or a remote GPU backend. Routes and cache code depend only on this.
 */
import type { GenerationOptionValues } from './options'

/** Defaults and limits of one served model, derived from its files. */
export interface ModelInfo {
  /** Model id used in requests (`model` field), e.g. `tiny-shapes`. */
  id: string
  /** SHA-256 over the model's files: part of every cache key. */
  digest: string
  /** Tokens available to the prompt (the text encoder window minus BOS/EOS). */
  maxPromptTokens: number
  /** Defaults filled into a request before it is keyed. */
  defaults: {
    steps: number
    guidance_scale: number
    scheduler: string
    width: number
    height: number
  }
  /** Bounds a request must satisfy. */
  limits: {
    maxWidth: number
    maxHeight: number
    /** Width and height must be multiples of this (the VAE scale factor, times 2 for the UNet). */
    sizeMultiple: number
    minSteps: number
    maxSteps: number
    minGuidance: number
    maxGuidance: number
    maxImages: number
  }
  /** Scheduler names accepted for this model (aliases and class names). */
  schedulers: readonly string[]
  /** The generation options (`./options`) this model's engine honours. */
  options: readonly string[]
  /**
   * The model's `scheduler_config.json`, where its schedulers run in this codebase: validation
   * builds the requested scheduler from it, so a constraint (PNDM's step count…) is a 422.
   */
  schedulerConfig?: Readonly<Record<string, unknown>>
  /**
   * What the model takes besides text, per picture field: `true`, or why not (no VAE encoder, no
   * ControlNet…). `text` is false for an inpainting-only model.
   */
  conditioning: Record<'text' | PictureField, true | string>
  /**
   * Every word the model was trained on, where its folder declares them (`known_words.json`):
   * a prompt's other words are reported to the caller (`X-Prompt-Warnings`). Absent: unknown.
   */
  knownWords?: readonly string[]
}

/** The request fields that carry a picture. */
export type PictureField = 'image' | 'mask' | 'control_image'

/**
 * A decoded input picture: HWC RGB for `image` and `control_image`, one luminance byte per pixel
 * for `mask`. `sha256` names the source file (it keys the cache; the bytes are not re-hashed).
 */
export interface InputPicture {
  sha256: string
  width: number
  height: number
  data: Uint8Array
}

/** A fully resolved generation request: defaults filled in, seed chosen. */
export interface GenerateRequest {
  model: string
  prompt: string
  negativePrompt: string
  seed: number
  steps: number
  guidanceScale: number
  width: number
  height: number
  scheduler: string
  /** Images to make; image i uses seed + i. */
  n: number
  /** Whether an over-long prompt is cut to the window instead of rejected. */
  truncate: boolean
  /** The options (`./options`) this request sets to other than their defaults. */
  options: GenerationOptionValues
  /** The pictures it is conditioned on (image-to-image, inpainting, ControlNet); absent for text. */
  pictures?: Partial<Record<PictureField, InputPicture>>
}

/** One generated image, already encoded. */
export interface GeneratedImage {
  bytes: Uint8Array
  contentType: 'image/png'
  seed: number
  width: number
  height: number
}

/** Token ids the model will see, used for validation and as the prompt part of cache keys. */
export interface TokenizedPrompt {
  /** Padded input ids of the text encoder window. */
  inputIds: number[]
  /** Prompt tokens before truncation (without BOS/EOS). */
  nTokens: number
  truncated: boolean
}

/** Progress of a running generation. */
export interface GenerationProgress {
  step: number
  totalSteps: number
  image: number
  /** While waiting for the engine (`./queue`), step 0: how many are ahead, plus one. */
  queuePosition?: number
}

/** Per-call options of `generate`. */
export interface GenerateOptions {
  signal?: AbortSignal
  onProgress?: (p: GenerationProgress) => void
}

/** Anything that can make images: the in-edge WebAssembly pipeline or a GPU backend client. */
export interface TextToImageEngine {
  /** The models this engine serves. */
  models(): readonly ModelInfo[]
  /** Tokenizes a prompt exactly as the model will see it. Throws on an unknown model. */
  tokenize(model: string, text: string): TokenizedPrompt
  /** Generates `req.n` images. Rejects on failure or abort. */
  generate(req: GenerateRequest, options?: GenerateOptions): Promise<GeneratedImage[]>
}
