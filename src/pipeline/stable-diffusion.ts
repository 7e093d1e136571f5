/**
 * @module
 * The denoising loop, step for step as diffusers' `StableDiffusionPipeline.__call__`:
 * encode prompts → prepare latents → for each timestep (one batched UNet call for both guidance
 * halves) → scheduler step → VAE decode → 8-bit RGB. The other conditioners follow their
 * diffusers pipelines in the same loop: an init image (`StableDiffusionImg2ImgPipeline`: VAE
 * encode, `strength` → timesteps, `add_noise`), a mask (`StableDiffusionInpaintPipeline`, with a
 * 9-channel inpainting UNet or by blending for an ordinary one) and a control picture
 * (`StableDiffusionControlNetPipeline`). Concurrent generations that share the size, scheduler
 * and timesteps can run as one batch (`generateBatch`, `./batch`): the same loop each, one UNet
 * call per step for all. Runs unchanged in workerd, Node, Deno and browsers; models are reached
 * only through `ModelSession`.
 *
 * @example
 * const model = await loadModel(folderSource('models/tiny-shapes'), createNodeBackend())
 * const pipe = new StableDiffusionPipeline(model)
 * const { images } = await pipe.generate({ prompt: 'a red circle', seed: 1 })
 */
import { asFloat32, floats, integers, scalars, type ModelSession, type Tensor } from './tensor'
import {
  binarizeMask,
  controlKeep,
  downsampleMask,
  imageToControlInput,
  imageToVaeInput,
  maskedVaeInput,
  samplePosterior,
  timestepsForStrength,
} from './conditioning'
import { decodedToRgb, type GrayImage, type RgbImage } from './image'
import { UnetBatch, type BatchSeat } from './batch'
import type { LoadedModel, ModelSpec, TimestepInput } from './model'
import { TorchGenerator } from './randn'
import { createScheduler, type Scheduler, type SchedulerConfig } from './schedulers'

/** Inputs of one generation; unset fields take the model's defaults. */
export interface GenerateParams {
  prompt: string
  negativePrompt?: string
  /** Seed of image 0; image i uses seed + i. */
  seed: number
  steps?: number
  guidanceScale?: number
  /** diffusers' `guidance_rescale` φ (Lin et al. 2023, eq. 16); 0 disables it. */
  guidanceRescale?: number
  width?: number
  height?: number
  /** Scheduler class name or alias; defaults to the model's. */
  scheduler?: string
  /** Merged over the model's scheduler config. */
  schedulerConfig?: SchedulerConfig
  /** `num_images_per_prompt`. */
  numImages?: number
  /** Cut over-long prompts instead of throwing. Defaults to true, as diffusers does. */
  truncate?: boolean
  /** Start latents for all images ([n, C, h, w]); drawn from the seeds when absent. */
  latents?: Float32Array
  /** Precomputed text encoder states for the prompt ([window, hidden]); skips the text encoder. */
  promptEmbeds?: Float32Array
  /** Precomputed states for the negative prompt, used with `promptEmbeds`. */
  negativePromptEmbeds?: Float32Array
  /** Init image (image-to-image, inpainting), at the output size; the size defaults to its own. */
  image?: RgbImage
  /** How far the init image is noised before denoising, in (0, 1] (diffusers' `strength`). */
  strength?: number
  /** Inpainting mask at the image's size: bytes ≥ 128 mark the region to repaint. */
  mask?: GrayImage
  /**
   * Paste the init image's pixels back outside the (binarized) mask after decoding, as diffusers'
   * `VaeImageProcessor.apply_overlay` does; off by default, as in its inpainting pipeline.
   */
  maskOverlay?: boolean
  /** Control picture for the model's ControlNet (a silhouette, a depth map), at the output size. */
  controlImage?: RgbImage
  /** `controlnet_conditioning_scale`: how strongly the control picture steers. */
  controlScale?: number
  /** `control_guidance_start`: the fraction of steps after which the ControlNet starts. */
  controlStart?: number
  /** `control_guidance_end`: the fraction of steps after which it stops. */
  controlEnd?: number
}

/**
 * Defaults of the conditioning parameters, as diffusers' pipelines have them (image-to-image
 * `strength` 0.8, inpainting 1.0; ControlNet scale 1 over the whole loop).
 */
export const CONDITIONING_DEFAULTS = Object.freeze({
  strength: 0.8,
  inpaintStrength: 1,
  controlScale: 1,
  controlStart: 0,
  controlEnd: 1,
})

/** Progress after each denoising step. */
export interface StepProgress {
  step: number
  totalSteps: number
  timestep: number
}

/** Per-call hooks. */
export interface GenerateOptions {
  onStep?: (p: StepProgress) => void
  signal?: AbortSignal
}

/** The result of a generation. */
export interface GenerateResult {
  images: RgbImage[]
  /** Final latents [n, C, h, w], before scaling. */
  latents: Float32Array
  /** The parameters after defaults, for metadata. */
  params: Required<
    Omit<
      GenerateParams,
      | 'latents'
      | 'schedulerConfig'
      | 'promptEmbeds'
      | 'negativePromptEmbeds'
      | 'image'
      | 'mask'
      | 'controlImage'
    >
  >
}

/** Error for inputs the pipeline refuses (caught before any model runs). */
export class PipelineInputError extends RangeError {
  override name = 'PipelineInputError'
}

/**
 * A model returned NaN or infinite values. Deterministic for the same inputs, so not worth a
 * retry; the usual cause is a float16 VAE overflowing (pair an fp16 UNet with an fp32 VAE).
 */
export class NonFiniteOutputError extends Error {
  override name = 'NonFiniteOutputError'
  /** Builds the error for `component` (and the denoising step, for the UNet). */
  constructor(
    readonly component: 'unet' | 'vae_decoder' | 'vae_encoder',
    step?: number,
  ) {
    super(
      component === 'unet'
        ? `the UNet returned NaN or infinite values at step ${step}; a float16 UNet overflowing is the usual cause`
        : `the ${component === 'vae_decoder' ? 'VAE decoder' : 'VAE encoder'} returned NaN or infinite values; a float16 VAE overflowing is the usual cause (pair the model with a float32 ${component})`,
    )
  }
}

/** Upper bounds checked by `checkInputs` to keep a request from exhausting memory. */
export const PIPELINE_LIMITS = Object.freeze({ maxSteps: 1000, maxImages: 16, maxGuidance: 100 })

/** Text-to-image over a loaded model. */
export class StableDiffusionPipeline {
  readonly #model: LoadedModel
  #embeddings = new Map<string, Float32Array>()
  /** Zero ControlNet residuals per batch shape (`rows×h×w`): the same for every generation. */
  #zeros = new Map<string, Record<string, Tensor>>()
  /** Where UNet calls go: the session, or a seat of a `UnetBatch` (see `inBatch`). */
  #unet: Pick<ModelSession, 'run'>
  #seat?: BatchSeat
  /** Bound of the prompt-embedding cache (entries). */
  static readonly EMBEDDING_CACHE_SIZE = 64

  /** Wraps a loaded model. */
  constructor(model: LoadedModel) {
    this.#model = model
    this.#unet = model.unet
  }

  /** What the pipeline derived from the model files. */
  get spec(): ModelSpec {
    return this.#model.spec
  }

  /** The tokenizer's files, as the model folder has them (for a model manifest). */
  get tokenizerFiles() {
    return this.#model.tokenizerFiles
  }

  /**
   * The text the model sees for `text`: its token window decoded (cleaned, lower-cased, cut
   * where truncation cuts). What a generated image may record of its prompt, since two prompts
   * with the same window make the same image and share it.
   */
  textSeen(text: string, truncate = true): string {
    return this.#model.tokenizer.decode(this.tokenize(text, truncate).inputIds)
  }

  /** Token ids the text encoder will see for `text`. */
  tokenize(text: string, truncate = true) {
    return this.#model.tokenizer.encodeForModel(text, { truncate })
  }

  /** Fills in defaults and validates; throws `PipelineInputError` with a plain message. */
  checkInputs(p: GenerateParams): GenerateResult['params'] {
    const spec = this.#model.spec
    const picture = p.image ?? p.controlImage
    const out = {
      prompt: p.prompt,
      negativePrompt: p.negativePrompt ?? '',
      seed: p.seed,
      steps: p.steps ?? spec.defaults.steps,
      guidanceScale: p.guidanceScale ?? spec.defaults.guidanceScale,
      guidanceRescale: p.guidanceRescale ?? 0,
      width: p.width ?? picture?.width ?? spec.defaults.width,
      height: p.height ?? picture?.height ?? spec.defaults.height,
      scheduler: p.scheduler ?? spec.defaults.scheduler,
      numImages: p.numImages ?? 1,
      truncate: p.truncate ?? true,
      strength:
        p.strength ??
        (p.mask ? CONDITIONING_DEFAULTS.inpaintStrength : CONDITIONING_DEFAULTS.strength),
      controlScale: p.controlScale ?? CONDITIONING_DEFAULTS.controlScale,
      controlStart: p.controlStart ?? CONDITIONING_DEFAULTS.controlStart,
      controlEnd: p.controlEnd ?? CONDITIONING_DEFAULTS.controlEnd,
      maskOverlay: p.maskOverlay ?? false,
    }
    if (typeof out.prompt !== 'string') throw new PipelineInputError('prompt must be a string')
    if (!Number.isInteger(out.seed) || out.seed < 0 || out.seed > 2 ** 53)
      throw new PipelineInputError(`seed must be a non-negative integer, got ${out.seed}`)
    if (!Number.isInteger(out.steps) || out.steps < 1 || out.steps > PIPELINE_LIMITS.maxSteps)
      throw new PipelineInputError(
        `steps must be an integer in 1..${PIPELINE_LIMITS.maxSteps}, got ${out.steps}`,
      )
    if (
      !Number.isFinite(out.guidanceScale) ||
      out.guidanceScale < 0 ||
      out.guidanceScale > PIPELINE_LIMITS.maxGuidance
    )
      throw new PipelineInputError(
        `guidance scale must be in 0..${PIPELINE_LIMITS.maxGuidance}, got ${out.guidanceScale}`,
      )
    if (!Number.isFinite(out.guidanceRescale) || out.guidanceRescale < 0 || out.guidanceRescale > 1)
      throw new PipelineInputError(`guidance rescale must be in 0..1, got ${out.guidanceRescale}`)
    if (
      !Number.isInteger(out.numImages) ||
      out.numImages < 1 ||
      out.numImages > PIPELINE_LIMITS.maxImages
    )
      throw new PipelineInputError(
        `number of images must be in 1..${PIPELINE_LIMITS.maxImages}, got ${out.numImages}`,
      )
    for (const [k, v] of [
      ['width', out.width],
      ['height', out.height],
    ] as const) {
      if (
        !Number.isInteger(v) ||
        v < spec.sizeMultiple ||
        v % spec.sizeMultiple !== 0 ||
        v > 4 * spec.sampleSize
      )
        throw new PipelineInputError(
          `${k} must be a multiple of ${spec.sizeMultiple} between ${spec.sizeMultiple} and ${4 * spec.sampleSize}, got ${v}`,
        )
    }
    const embSize = spec.tokenWindow * spec.hiddenSize
    for (const [k, v] of [
      ['promptEmbeds', p.promptEmbeds],
      ['negativePromptEmbeds', p.negativePromptEmbeds],
    ] as const) {
      if (v && v.length !== embSize)
        throw new PipelineInputError(
          `${k} must have ${embSize} values ([${spec.tokenWindow}, ${spec.hiddenSize}]), got ${v.length}`,
        )
    }
    this.#checkConditioning(p, out)
    if (p.latents) {
      const want = out.numImages * this.#latentNumel(out.height, out.width)
      if (p.latents.length !== want)
        throw new PipelineInputError(
          `latents must have ${want} values ([${out.numImages}, ${spec.latentChannels}, ${out.height / spec.vaeScaleFactor}, ${out.width / spec.vaeScaleFactor}]), got ${p.latents.length}`,
        )
    }
    return out
  }

  /** What the model cannot do of what `p` asks, and pictures that do not fit: `PipelineInputError`. */
  #checkConditioning(p: GenerateParams, out: GenerateResult['params']): void {
    const c = this.#model.spec.conditioners
    const refuse = (what: string, reason: string) => {
      throw new PipelineInputError(`${what}: ${reason}`)
    }
    if (p.mask && !p.image) refuse('mask', 'inpainting needs the image the mask applies to')
    if (p.mask && typeof c.inpainting === 'object') refuse('mask', c.inpainting.reason)
    if (p.image && !p.mask && c.imageToImage !== true) refuse('image', c.imageToImage.reason)
    if (!p.image && c.textToImage !== true) refuse('image', c.textToImage.reason)
    if (p.controlImage && c.controlNet !== true) refuse('control image', c.controlNet.reason)
    const pictures = [
      ['image', p.image],
      ['mask', p.mask],
      ['control image', p.controlImage],
    ] as const
    for (const [name, pic] of pictures) {
      if (!pic) continue
      const channels = name === 'mask' ? 1 : 3
      if (
        !Number.isInteger(pic.width) ||
        !Number.isInteger(pic.height) ||
        pic.data?.length !== pic.width * pic.height * channels
      )
        refuse(name, `must hold ${channels} byte(s) per pixel of its width × height`)
      if (pic.width !== out.width || pic.height !== out.height)
        refuse(
          name,
          `is ${pic.width}x${pic.height} but the output is ${out.width}x${out.height}; pictures must have the output's size`,
        )
    }
    if (p.image) {
      if (!Number.isFinite(out.strength) || out.strength <= 0 || out.strength > 1)
        refuse('strength', `must be in (0, 1], got ${out.strength}`)
      if (Math.floor(out.steps * out.strength) < 1)
        refuse(
          'strength',
          `${out.strength} of ${out.steps} steps runs none; raise steps or strength so that steps × strength ≥ 1`,
        )
    }
    if (p.controlImage) {
      if (!Number.isFinite(out.controlScale) || out.controlScale < 0 || out.controlScale > 10)
        refuse('control scale', `must be in 0..10, got ${out.controlScale}`)
      const { controlStart: a, controlEnd: b } = out
      if (!(a >= 0 && a <= 1 && b >= 0 && b <= 1 && a < b))
        refuse('control window', `start and end must satisfy 0 ≤ start < end ≤ 1, got ${a}, ${b}`)
    }
  }

  /**
   * What generations must share to run in one batch (see `inBatch`): the model, output size,
   * scheduler class and config, and the timesteps run (steps, and strength with an init image).
   * Throws `PipelineInputError` where `checkInputs` does.
   */
  batchKey(params: GenerateParams): string {
    const p = this.checkInputs(params)
    const spec = this.#model.spec
    const s = createScheduler(p.scheduler, spec.schedulerConfig, params.schedulerConfig ?? {})
    s.setTimesteps(p.steps)
    const timesteps = params.image ? timestepsForStrength(s, p.steps, p.strength) : s.timesteps
    return JSON.stringify([
      spec.id,
      spec.digest,
      p.width,
      p.height,
      s.className,
      s.config,
      timesteps,
    ])
  }

  /**
   * `count` views of this pipeline whose generations form one batch: each view runs one
   * generation (`generate`, once) with everything of its own, but its UNet calls are merged with
   * the others' into one call per step (`./batch`). The generations must have the same
   * `batchKey`; a view that will not generate must `leaveBatch`, or the others wait for it.
   */
  inBatch(count: number): StableDiffusionPipeline[] {
    const spec = this.#model.spec
    const batch = new UnetBatch(this.#model.unet, {
      sample: spec.io.sample,
      timestep: spec.io.timestep,
      timestepLayout: spec.timestep.layout,
    })
    return Array.from({ length: count }, () => {
      const view = new StableDiffusionPipeline(this.#model)
      view.#embeddings = this.#embeddings
      view.#zeros = this.#zeros
      view.#seat = batch.seat()
      view.#unet = view.#seat
      return view
    })
  }

  /** Leaves the batch this view belongs to (see `inBatch`); nothing for other pipelines. */
  leaveBatch(): void {
    this.#seat?.leave()
  }

  /**
   * Runs `jobs` as one batch (`inBatch`): one promise per job, each settling on its own, each
   * result what the job gives alone up to floating-point batching effects.
   */
  generateBatch(
    jobs: readonly { params: GenerateParams; options?: GenerateOptions }[],
  ): Promise<GenerateResult>[] {
    const keys = new Set<string>()
    for (const job of jobs) {
      try {
        keys.add(this.batchKey(job.params))
      } catch {
        // Refused by checkInputs: its own generate rejects with the reason and leaves the batch.
      }
    }
    if (keys.size > 1)
      throw new PipelineInputError(
        'generations in one batch must share size, scheduler and timesteps (see batchKey)',
      )
    const views = this.inBatch(jobs.length)
    return jobs.map((job, i) => views[i].generate(job.params, job.options))
  }

  /** Runs the whole pipeline. */
  async generate(params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
    if (!this.#seat) return this.#generate(params, options)
    try {
      return await this.#generate(params, options)
    } finally {
      this.#seat.leave() // a batch member makes no more UNet calls: the others stop waiting
    }
  }

  async #generate(params: GenerateParams, options: GenerateOptions): Promise<GenerateResult> {
    const { signal, onStep } = options
    // 1. Check inputs and build the schedulers (one per image: each has its own noise stream).
    const p = this.checkInputs(params)
    const spec = this.#model.spec
    const n = p.numImages
    const init = params.image
    const mask = params.mask && binarizeMask(params.mask)
    const inpaintUnet = spec.unetInChannels !== spec.latentChannels
    const schedulers: Scheduler[] = Array.from({ length: n }, () => {
      const s = createScheduler(p.scheduler, spec.schedulerConfig, params.schedulerConfig ?? {})
      s.setTimesteps(p.steps)
      return s
    })
    // With an init image, `strength` skips the first timesteps (diffusers' `get_timesteps`).
    const timesteps = init
      ? schedulers.map((s) => timestepsForStrength(s, p.steps, p.strength))[0]
      : schedulers[0].timesteps
    const doCfg = p.guidanceScale > 1

    // 2. Encode the prompt (and the negative prompt, for classifier-free guidance).
    signal?.throwIfAborted()
    const cond = params.promptEmbeds ?? (await this.encodePrompt(p.prompt, p.truncate))
    const uncond = doCfg
      ? (params.negativePromptEmbeds ?? (await this.encodePrompt(p.negativePrompt, p.truncate)))
      : undefined
    const embDims = [spec.tokenWindow, spec.hiddenSize]
    const embSize = embDims[0] * embDims[1]
    const halves = doCfg ? 2 : 1
    const ehs = new Float32Array(halves * n * embSize)
    for (let i = 0; i < n; i++) {
      if (uncond) ehs.set(uncond, i * embSize)
      ehs.set(cond, ((halves - 1) * n + i) * embSize)
    }
    const ehsTensor = floats(spec.types.encoderHiddenStates, ehs, [halves * n, ...embDims])

    // 3. Prepare latents from torch's CPU generator seeded with seed + i. Its draws come in
    // diffusers' order: the init image's posterior, the noise, the masked image's posterior (drawn
    // for either UNet kind), then the scheduler's own noise during the loop.
    const h = p.height / spec.vaeScaleFactor
    const w = p.width / spec.vaeScaleFactor
    const numel = this.#latentNumel(p.height, p.width)
    const shape = [1, spec.latentChannels, h, w]
    const generators = schedulers.map((_, i) => new TorchGenerator(p.seed + i))
    const fullNoise = Boolean(mask) && p.strength === 1 // inpainting from pure noise
    const vaeInput = init && imageToVaeInput(init)
    const imageParams =
      vaeInput && !(fullNoise && inpaintUnet) ? await this.#encodeImage(vaeInput, p) : undefined
    const maskedParams =
      vaeInput && mask && inpaintUnet
        ? await this.#encodeImage(maskedVaeInput(vaeInput, mask), p)
        : undefined
    const imageLatents: Float32Array[] = []
    const noises: Float32Array[] = []
    const maskedLatents: Float32Array[] = []
    let latents = new Float32Array(n * numel)
    for (let i = 0; i < n; i++) {
      const gen = generators[i]
      if (imageParams)
        imageLatents[i] = samplePosterior(imageParams, shape, spec.scalingFactor, gen)
      const noise = params.latents
        ? params.latents.subarray(i * numel, (i + 1) * numel)
        : gen.randn(shape)
      noises[i] = noise
      if (init && !fullNoise) {
        latents.set(schedulers[i].addNoise(imageLatents[i], noise, timesteps[0]), i * numel)
      } else {
        const sigma = schedulers[i].initNoiseSigma
        for (let k = 0; k < numel; k++) latents[i * numel + k] = Math.fround(noise[k] * sigma)
      }
      if (mask) {
        if (maskedParams)
          maskedLatents[i] = samplePosterior(maskedParams, shape, spec.scalingFactor, gen)
        else gen.randn(shape) // diffusers draws it for a 4-channel UNet too, and drops it
      }
    }
    const latentMask = mask && downsampleMask(mask, p.width, p.height, spec.vaeScaleFactor)
    const control = params.controlImage && {
      keep: controlKeep(timesteps.length, p.controlStart, p.controlEnd),
      cond: this.#controlCond(params.controlImage, halves * n),
    }

    // 4. Denoising loop. Batch rows: [uncond_0..uncond_{n-1}, cond_0..cond_{n-1}] under CFG.
    const row = (a: Float32Array, r: number) => a.subarray(r * numel, (r + 1) * numel)
    const rows = halves * n
    const modelInput = new Float32Array(rows * numel)
    const unetSample = inpaintUnet
      ? new Float32Array(rows * spec.unetInChannels * h * w)
      : modelInput
    for (let step = 0; step < timesteps.length; step++) {
      signal?.throwIfAborted()
      const t = timesteps[step]
      for (let i = 0; i < n; i++) {
        const scaled = schedulers[i].scaleModelInput(row(latents, i), t)
        for (let half = 0; half < halves; half++) modelInput.set(scaled, (half * n + i) * numel)
      }
      if (inpaintUnet) {
        // The inpainting UNet's input: [latents (4), mask (1), masked-image latents (4)] per row.
        const plane = h * w
        const size = spec.unetInChannels * plane
        for (let r = 0; r < rows; r++) {
          unetSample.set(row(modelInput, r), r * size)
          unetSample.set(latentMask!, r * size + numel)
          unetSample.set(maskedLatents[r % n], r * size + numel + plane)
        }
      }
      const sampleTensor = floats(spec.types.sample, modelInput, [rows, spec.latentChannels, h, w])
      const feeds: Record<string, Tensor> = {
        [spec.io.sample]: inpaintUnet
          ? floats(spec.types.sample, unetSample, [rows, spec.unetInChannels, h, w])
          : sampleTensor,
        [spec.io.timestep]: timestepTensor(spec.timestep, t, rows),
        [spec.io.encoderHiddenStates]: ehsTensor,
      }
      if (spec.io.residuals.length) {
        // Outside the control window (or without a control picture) the residuals are zero:
        // the ControlNet runs once at scale 0 for their shapes, and its zeros are reused.
        const scale = control ? p.controlScale * control.keep[step] : 0
        if (scale !== 0) {
          Object.assign(
            feeds,
            await this.#controlResiduals(sampleTensor, t, ehsTensor, control!.cond, scale),
          )
        } else {
          Object.assign(feeds, await this.#zeroResiduals(sampleTensor, t, ehsTensor, p))
        }
      }
      const out = await this.#unet.run(feeds, [spec.io.noisePred])
      const noisePred = asFloat32(out[spec.io.noisePred])
      if (!allFinite(noisePred)) throw new NonFiniteOutputError('unet', step + 1)
      const next = new Float32Array(n * numel)
      for (let i = 0; i < n; i++) {
        const text = row(noisePred, (halves - 1) * n + i)
        let eps = text
        if (doCfg) {
          eps = guide(row(noisePred, i), text, p.guidanceScale)
          if (p.guidanceRescale > 0) eps = rescaleNoiseCfg(eps, text, p.guidanceRescale)
        }
        let prev = schedulers[i].step(eps, t, row(latents, i), {
          eta: 0,
          generator: generators[i],
        }).prevSample
        if (mask && !inpaintUnet) {
          // An ordinary UNet inpaints by blending: outside the mask, the init latents noised to
          // the next timestep (clean after the last), inside, what the loop drew.
          const known =
            step === timesteps.length - 1
              ? imageLatents[i]
              : schedulers[i].addNoise(imageLatents[i], noises[i], timesteps[step + 1])
          prev = blend(latentMask!, known, prev, numel / (h * w))
        }
        next.set(prev, i * numel)
      }
      latents = next
      if (!allFinite(latents)) {
        throw new Error(`non-finite latents after step ${step + 1} (scheduler ${p.scheduler})`)
      }
      onStep?.({ step: step + 1, totalSteps: timesteps.length, timestep: t })
      // Yield a macrotask: ORT's WebAssembly run settles in microtasks, so without this a whole
      // generation holds the thread and progress (or any other request) waits until it ends.
      await nextMacrotask()
    }

    // 5. Decode with the VAE: latents / scaling_factor, then to 8-bit RGB.
    signal?.throwIfAborted()
    const scaled = latents.map((v) => v / spec.scalingFactor)
    const decodedOut = await this.#model.vaeDecoder.run({
      [spec.io.latentSample]: floats(spec.types.latentSample, scaled, [
        n,
        spec.latentChannels,
        h,
        w,
      ]),
    })
    const decoded = asFloat32(decodedOut[spec.io.decoded])
    // Never turn NaN into a silent black image (it would be cached and served forever).
    if (!allFinite(decoded)) throw new NonFiniteOutputError('vae_decoder')
    const images = Array.from({ length: n }, (_, i) => decodedToRgb(decoded, i, p.height, p.width))
    if (mask && init && p.maskOverlay) for (const image of images) overlay(image, init, mask)
    return { images, latents, params: p }
  }

  /** The VAE encoder's `latent_parameters` (mean and log-variance) for a `[1, 3, H, W]` input. */
  async #encodeImage(vaeInput: Float32Array, p: GenerateResult['params']): Promise<Float32Array> {
    const spec = this.#model.spec
    const encoder = this.#model.vaeEncoder
    if (!encoder || !spec.io.encoderSample || !spec.io.latentParameters)
      throw new PipelineInputError('image: the model has no usable vae_encoder')
    const out = await encoder.run(
      {
        [spec.io.encoderSample]: floats(spec.types.encoderSample!, vaeInput, [
          1,
          3,
          p.height,
          p.width,
        ]),
      },
      [spec.io.latentParameters],
    )
    const params = asFloat32(out[spec.io.latentParameters])
    if (!allFinite(params)) throw new NonFiniteOutputError('vae_encoder')
    return params
  }

  /** The control picture as the ControlNet takes it: [0, 1], repeated for every batch row. */
  #controlCond(
    image: RgbImage | undefined,
    rows: number,
    size?: { width: number; height: number },
  ): Tensor {
    const spec = this.#model.spec
    const width = image?.width ?? size!.width
    const height = image?.height ?? size!.height
    const one = image ? imageToControlInput(image) : new Float32Array(3 * width * height)
    const all = new Float32Array(rows * one.length)
    for (let r = 0; r < rows; r++) all.set(one, r * one.length)
    return floats(spec.types.controlCond ?? 'float32', all, [rows, 3, height, width])
  }

  /**
   * Zeros for the UNet's residual inputs (no control picture, or outside the window): the
   * ControlNet run once at scale 0 for their shapes, then kept per batch shape.
   */
  async #zeroResiduals(
    sample: Tensor,
    t: number,
    ehs: Tensor,
    p: GenerateResult['params'],
  ): Promise<Record<string, Tensor>> {
    const key = sample.dims.join('x')
    let zeros = this.#zeros.get(key)
    if (!zeros) {
      const cond = this.#controlCond(undefined, sample.dims[0], p)
      zeros = await this.#controlResiduals(sample, t, ehs, cond, 0)
      // A few shapes at most (a full-size ControlNet's residuals are large): drop the oldest.
      if (this.#zeros.size >= 4) this.#zeros.delete(this.#zeros.keys().next().value as string)
      this.#zeros.set(key, zeros)
    }
    return zeros
  }

  /** The ControlNet's residuals at `scale`, keyed by the UNet inputs they feed. */
  async #controlResiduals(
    sample: Tensor,
    t: number,
    ehs: Tensor,
    cond: Tensor,
    scale: number,
  ): Promise<Record<string, Tensor>> {
    const spec = this.#model.spec
    const io = spec.io.controlnet!
    const rows = sample.dims[0]
    const feeds: Record<string, Tensor> = {
      [io.sample]: sample,
      [io.timestep]: timestepTensor(io.timestepInput, t, rows),
      [io.encoderHiddenStates]: ehs,
      [io.cond]: cond,
    }
    if (io.scale) feeds[io.scale.name] = scalars(io.scale.type, [scale], [1])
    const out = await this.#model.controlnet!.run(feeds, spec.io.residuals)
    if (io.scale) return out
    // A ControlNet without a scale input (Amblyopius-style exports): scale its outputs here.
    const scaledOut: Record<string, Tensor> = {}
    for (const [name, tensor] of Object.entries(out)) {
      const v = asFloat32(tensor).map((x) => Math.fround(x * scale))
      scaledOut[name] = floats(tensor.type === 'float16' ? 'float16' : 'float32', v, tensor.dims)
    }
    return scaledOut
  }

  /** Text encoder hidden states for one prompt ([window, hidden]); cached by token ids. */
  async encodePrompt(text: string, truncate = true): Promise<Float32Array> {
    return this.encodeTokenIds(this.tokenize(text, truncate).inputIds)
  }

  /**
   * Text encoder hidden states for padded token ids ([window] → [window, hidden]), as a GPU
   * backend receives them when the text encoder is placed there. LRU-cached by the ids, so the
   * edge and the backend share one cache rule.
   */
  async encodeTokenIds(ids: readonly number[]): Promise<Float32Array> {
    const spec = this.#model.spec
    if (ids.length !== spec.tokenWindow || !ids.every((i) => Number.isInteger(i) && i >= 0))
      throw new PipelineInputError(
        `input ids must be ${spec.tokenWindow} non-negative integers, got ${ids.length} values`,
      )
    const key = ids.join(',')
    const hit = this.#embeddings.get(key)
    if (hit) {
      // Refresh: the least recently used entry is the first in insertion order.
      this.#embeddings.delete(key)
      this.#embeddings.set(key, hit)
      return hit
    }
    const out = await this.#model.textEncoder.run(
      { [spec.io.inputIds]: integers(spec.inputIdsType, ids, [1, ids.length]) },
      [spec.io.hiddenStates],
    )
    const emb = asFloat32(out[spec.io.hiddenStates]).slice()
    if (this.#embeddings.size >= StableDiffusionPipeline.EMBEDDING_CACHE_SIZE) {
      this.#embeddings.delete(this.#embeddings.keys().next().value as string)
    }
    this.#embeddings.set(key, emb)
    return emb
  }

  #latentNumel(height: number, width: number): number {
    const spec = this.#model.spec
    return (spec.latentChannels * height * width) / spec.vaeScaleFactor ** 2
  }
}

/** The timestep as a model declares it: float or int, scalar or one value per batch row. */
function timestepTensor(input: TimestepInput, t: number, batch: number): Tensor {
  const { type, layout } = input
  const dims = layout === 'scalar' ? [] : layout === 'one' ? [1] : [batch]
  const count = layout === 'batch' ? batch : 1
  if (type === 'float32' || type === 'float16')
    return floats(type, new Float32Array(count).fill(t), dims)
  return integers(type, new Array<number>(count).fill(Math.trunc(t)), dims)
}

/**
 * The inpainting blend `(1 − m)·known + m·drawn` with m the latent mask (0 or 1, one value per
 * pixel, the same for every channel).
 */
function blend(
  mask: Float32Array,
  known: Float32Array,
  drawn: Float32Array,
  channels: number,
): Float32Array {
  const plane = mask.length
  const out = new Float32Array(drawn.length)
  for (let c = 0; c < channels; c++)
    for (let k = 0; k < plane; k++) {
      const m = mask[k]
      const j = c * plane + k
      out[j] = Math.fround(Math.fround((1 - m) * known[j]) + Math.fround(m * drawn[j]))
    }
  return out
}

/** Puts the init image's pixels back where the binarized mask keeps them (mask 0). */
function overlay(image: RgbImage, init: RgbImage, mask: Uint8Array): void {
  for (let p = 0; p < mask.length; p++)
    if (!mask[p]) image.data.set(init.data.subarray(p * 3, p * 3 + 3), p * 3)
}

/** Whether every value is finite (a plain loop: `every` on a typed array is several times slower). */
function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false
  return true
}

/** Classifier-free guidance: ε = ε_u + s·(ε_c − ε_u) (Ho & Salimans 2022, eq. 6), in float32. */
function guide(u: Float32Array, c: Float32Array, scale: number): Float32Array {
  const out = new Float32Array(u.length)
  const s = Math.fround(scale)
  for (let k = 0; k < u.length; k++)
    out[k] = Math.fround(u[k] + Math.fround(s * Math.fround(c[k] - u[k])))
  return out
}

/** diffusers' `rescale_noise_cfg` (Lin et al. 2023, §3.4): match the std of the text prediction. */
function rescaleNoiseCfg(cfg: Float32Array, text: Float32Array, phi: number): Float32Array {
  const std = (x: Float32Array) => {
    let m = 0
    for (const v of x) m += v
    m /= x.length
    let s = 0
    for (const v of x) s += (v - m) ** 2
    return Math.sqrt(s / (x.length - 1))
  }
  const ratio = std(text) / std(cfg)
  const out = new Float32Array(cfg.length)
  for (let k = 0; k < cfg.length; k++) out[k] = phi * cfg[k] * ratio + (1 - phi) * cfg[k]
  return out
}

const setImmediateFn = (
  globalThis as { setImmediate?: (fn: () => void) => unknown }
).setImmediate?.bind(globalThis)

/**
 * Resolves on a later macrotask. `setImmediate` where the runtime has it (Node): `setTimeout(0)`
 * costs at least 1 ms there, about 20 ms per 20-step image (measured by `npm run bench`).
 */
function nextMacrotask(): Promise<void> {
  return new Promise((resolve) =>
    setImmediateFn ? setImmediateFn(resolve) : setTimeout(resolve, 0),
  )
}
