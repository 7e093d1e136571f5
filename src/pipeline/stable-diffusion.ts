/**
 * @module
 * The text-to-image loop, step for step as diffusers' `StableDiffusionPipeline.__call__`:
 * encode prompts → prepare latents → for each timestep (one batched UNet call for both guidance
 * halves) → scheduler step → VAE decode → 8-bit RGB. Runs unchanged in workerd, Node, Deno and
 * browsers; models are reached only through `ModelSession`.
 *
 * @example
 * const model = await loadModel(folderSource('models/tiny-shapes'), createNodeBackend())
 * const pipe = new StableDiffusionPipeline(model)
 * const { images } = await pipe.generate({ prompt: 'a red circle', seed: 1 })
 */
import { asFloat32, floats, integers, type Tensor } from './tensor'
import { decodedToRgb, type RgbImage } from './image'
import type { LoadedModel, ModelSpec } from './model'
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
}

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
    Omit<GenerateParams, 'latents' | 'schedulerConfig' | 'promptEmbeds' | 'negativePromptEmbeds'>
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
    readonly component: 'unet' | 'vae_decoder',
    step?: number,
  ) {
    super(
      component === 'vae_decoder'
        ? 'the VAE decoder returned NaN or infinite values; a float16 VAE overflowing is the usual cause (pair the model with a float32 vae_decoder)'
        : `the UNet returned NaN or infinite values at step ${step}; a float16 UNet overflowing is the usual cause`,
    )
  }
}

/** Upper bounds checked by `checkInputs` to keep a request from exhausting memory. */
export const PIPELINE_LIMITS = Object.freeze({ maxSteps: 1000, maxImages: 16, maxGuidance: 100 })

/** Text-to-image over a loaded model. */
export class StableDiffusionPipeline {
  readonly #model: LoadedModel
  readonly #embeddings = new Map<string, Float32Array>()
  /** Bound of the prompt-embedding cache (entries). */
  static readonly EMBEDDING_CACHE_SIZE = 64

  /** Wraps a loaded model. */
  constructor(model: LoadedModel) {
    this.#model = model
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
    const out = {
      prompt: p.prompt,
      negativePrompt: p.negativePrompt ?? '',
      seed: p.seed,
      steps: p.steps ?? spec.defaults.steps,
      guidanceScale: p.guidanceScale ?? spec.defaults.guidanceScale,
      guidanceRescale: p.guidanceRescale ?? 0,
      width: p.width ?? spec.defaults.width,
      height: p.height ?? spec.defaults.height,
      scheduler: p.scheduler ?? spec.defaults.scheduler,
      numImages: p.numImages ?? 1,
      truncate: p.truncate ?? true,
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
    if (p.latents) {
      const want = out.numImages * this.#latentNumel(out.height, out.width)
      if (p.latents.length !== want)
        throw new PipelineInputError(
          `latents must have ${want} values ([${out.numImages}, ${spec.latentChannels}, ${out.height / spec.vaeScaleFactor}, ${out.width / spec.vaeScaleFactor}]), got ${p.latents.length}`,
        )
    }
    return out
  }

  /** Runs the whole pipeline. */
  async generate(params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
    const { signal, onStep } = options
    // 1. Check inputs and build the schedulers (one per image: each has its own noise stream).
    const p = this.checkInputs(params)
    const spec = this.#model.spec
    const n = p.numImages
    const makeScheduler = () => {
      const s = createScheduler(p.scheduler, spec.schedulerConfig, params.schedulerConfig ?? {})
      s.setTimesteps(p.steps)
      return s
    }
    const schedulers: Scheduler[] = Array.from({ length: n }, makeScheduler)
    const timesteps = schedulers[0].timesteps
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

    // 3. Prepare latents: randn from torch's CPU generator seeded with seed + i, × init σ.
    const h = p.height / spec.vaeScaleFactor
    const w = p.width / spec.vaeScaleFactor
    const numel = this.#latentNumel(p.height, p.width)
    const shape = [1, spec.latentChannels, h, w]
    const generators = schedulers.map((_, i) => new TorchGenerator(p.seed + i))
    let latents = new Float32Array(n * numel)
    for (let i = 0; i < n; i++) {
      const noise = params.latents
        ? params.latents.subarray(i * numel, (i + 1) * numel)
        : generators[i].randn(shape)
      const sigma = schedulers[i].initNoiseSigma
      for (let k = 0; k < numel; k++) latents[i * numel + k] = Math.fround(noise[k] * sigma)
    }

    // 4. Denoising loop. Batch rows: [uncond_0..uncond_{n-1}, cond_0..cond_{n-1}] under CFG.
    const row = (a: Float32Array, r: number) => a.subarray(r * numel, (r + 1) * numel)
    const modelInput = new Float32Array(halves * n * numel)
    for (let step = 0; step < timesteps.length; step++) {
      signal?.throwIfAborted()
      const t = timesteps[step]
      for (let i = 0; i < n; i++) {
        const scaled = schedulers[i].scaleModelInput(row(latents, i), t)
        for (let half = 0; half < halves; half++) modelInput.set(scaled, (half * n + i) * numel)
      }
      const out = await this.#model.unet.run({
        [spec.io.sample]: floats(spec.types.sample, modelInput, [
          halves * n,
          spec.latentChannels,
          h,
          w,
        ]),
        [spec.io.timestep]: this.#timestepTensor(t, halves * n),
        [spec.io.encoderHiddenStates]: ehsTensor,
      })
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
        const res = schedulers[i].step(eps, t, row(latents, i), {
          eta: 0,
          generator: generators[i],
        })
        next.set(res.prevSample, i * numel)
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
    return { images, latents, params: p }
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

  /** The timestep as the UNet declares it: float or int, scalar or one value per batch row. */
  #timestepTensor(t: number, batch: number): Tensor {
    const { type, layout } = this.#model.spec.timestep
    const dims = layout === 'scalar' ? [] : layout === 'one' ? [1] : [batch]
    const count = layout === 'batch' ? batch : 1
    if (type === 'float32' || type === 'float16')
      return floats(type, new Float32Array(count).fill(t), dims)
    return integers(type, new Array<number>(count).fill(Math.trunc(t)), dims)
  }
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
