/**
 * @module
 * Loads a Stable Diffusion model folder in the diffusers / optimum ONNX layout and derives
 * everything the pipeline needs from its files and its sessions' metadata: token window and id
 * dtype, hidden size, timestep dtype and rank, VAE scale and scaling factor, training resolution,
 * defaults. Nothing model-specific is hard-coded.
 */
import { bytesReader, readOnnxMetadata, type OnnxMetadata } from './onnx-metadata'
import type { InferenceBackend, ModelFile, ModelSession, ValueInfo } from './tensor'
import { ModelLoadError, readJson, readText, type ModelSource } from './model-source'
import type { SchedulerConfig } from './schedulers'
import { ClipTokenizer, type ClipTokenizerFiles } from './tokenizer'

/** The files of a model folder, relative to its root. `model.onnx` may have external data. */
export const MODEL_FILES = Object.freeze({
  index: 'model_index.json',
  scheduler: 'scheduler/scheduler_config.json',
  tokenizer: Object.freeze({
    vocab: 'tokenizer/vocab.json',
    merges: 'tokenizer/merges.txt',
    config: 'tokenizer/tokenizer_config.json',
    specialTokens: 'tokenizer/special_tokens_map.json',
  }),
  components: Object.freeze(['text_encoder', 'unet', 'vae_decoder'] as const),
  /** Loaded where present: the conditioners beyond text (image-to-image, inpainting, ControlNet). */
  optionalComponents: Object.freeze(['vae_encoder', 'controlnet'] as const),
  /**
   * Our extension, where present: `{"words": [...]}`, every word the model was trained on, so a
   * prompt's other words can be reported. Not in the digest: it changes no output.
   */
  knownWords: 'known_words.json',
})

/** Pipeline defaults a model folder may set (`model_index.json` `_defaults`, our extension). */
export interface ModelDefaults {
  steps: number
  guidanceScale: number
  scheduler: string
  /** Image size in pixels (`_defaults` `width`/`height`, else the training resolution). */
  width: number
  height: number
}

/**
 * Bounds of a request to a served model, the same for every model: the one table that request
 * validation (`GET /v1/models` `limits`) and the serving engines read. Sizes are bounded by the
 * model's training resolution (`sampleSize`) times `maxSizeFactor`. The pipeline's own
 * `PIPELINE_LIMITS` are wider: they only keep a direct caller (CLI, tests) from exhausting memory.
 */
export const MODEL_LIMITS = Object.freeze({
  minSteps: 1,
  maxSteps: 100,
  minGuidance: 0,
  maxGuidance: 30,
  maxImages: 4,
  maxSizeFactor: 1,
})

/** How the UNet wants its timestep: element type and rank (scalar `[]` or `[batch]`). */
export interface TimestepInput {
  type: 'float32' | 'float16' | 'int64' | 'int32'
  /** `scalar`: shape []; `batch`: shape [B]; `one`: a fixed shape [1] broadcast to the batch. */
  layout: 'scalar' | 'batch' | 'one'
}

/**
 * What conditions a model can take besides text, derived from its files. Each `false` carries
 * the reason, so a request the model cannot serve is refused with it.
 */
export interface Conditioners {
  /** An init image (needs a VAE encoder that outputs the posterior's parameters). */
  imageToImage: true | { reason: string }
  /**
   * Inpainting: `unet` for a 9-channel inpainting UNet (mask and masked-image latents are UNet
   * inputs), `blend` for an ordinary UNet whose known region is re-noised each step.
   */
  inpainting: 'unet' | 'blend' | { reason: string }
  /** A control picture through a ControlNet whose outputs the UNet takes by name. */
  controlNet: true | { reason: string }
  /** Text alone (a 9-channel inpainting UNet needs an image and a mask). */
  textToImage: true | { reason: string }
}

/** Everything derived from a model folder. */
export interface ModelSpec {
  /**
   * Public model id: `model_index.json` `_name_or_path` (as diffusers records it), else the last
   * segment of the folder's path or URL. Edge and backend derive it the same way, here.
   */
  id: string
  /** SHA-256 (hex) over every file's path and bytes: part of every cache key. */
  digest: string
  /** Text encoder sequence length (77 for CLIP). */
  tokenWindow: number
  /** Id dtype of the text encoder input. */
  inputIdsType: 'int32' | 'int64'
  /** Width of the text encoder's hidden states (the UNet's cross-attention dim). */
  hiddenSize: number
  /** Latent channels (the UNet's output; its input has 9 for an inpainting UNet). */
  latentChannels: number
  /** Input channels of the UNet's `sample`: `latentChannels`, or 9 for an inpainting UNet. */
  unetInChannels: number
  /** What the model can be conditioned on besides text. */
  conditioners: Conditioners
  /** Pixels per latent along each side (2^(len(block_out_channels)-1) of the VAE). */
  vaeScaleFactor: number
  /** Latents are divided by this before decoding. */
  scalingFactor: number
  /** Image sizes must be multiples of this: VAE factor × the UNet's total downsampling. */
  sizeMultiple: number
  /** The training resolution in pixels (UNet `sample_size` × VAE factor). */
  sampleSize: number
  timestep: TimestepInput
  /** Bytes of each component's files (model and external data), where the source can tell. */
  componentBytes: Partial<Record<Component, number>>
  /** Element types of the float inputs and outputs (float16 ones are converted at the boundary). */
  types: {
    hiddenStates: 'float32' | 'float16'
    sample: 'float32' | 'float16'
    encoderHiddenStates: 'float32' | 'float16'
    noisePred: 'float32' | 'float16'
    latentSample: 'float32' | 'float16'
    decoded: 'float32' | 'float16'
    /** VAE encoder input and output, where the model has one. */
    encoderSample?: 'float32' | 'float16'
    latentParameters?: 'float32' | 'float16'
    /** ControlNet picture input, where the model has one. */
    controlCond?: 'float32' | 'float16'
  }
  /** Names of the sessions' inputs and outputs, resolved once. */
  io: {
    inputIds: string
    hiddenStates: string
    sample: string
    timestep: string
    encoderHiddenStates: string
    noisePred: string
    latentSample: string
    decoded: string
    encoderSample?: string
    latentParameters?: string
    /** The ControlNet's inputs (`conditioning_scale` absent: the pipeline scales its outputs). */
    controlnet?: {
      sample: string
      timestep: string
      timestepInput: TimestepInput
      encoderHiddenStates: string
      cond: string
      scale?: { name: string; type: 'float32' | 'float64' | 'float16' }
    }
    /**
     * UNet inputs fed by the ControlNet output of the same name (OnnxStack layout); without a
     * control picture they are fed zeros.
     */
    residuals: string[]
  }
  defaults: ModelDefaults
  /** The model's `scheduler_config.json`, as written. */
  schedulerConfig: SchedulerConfig
  /** The words its training captions used (`known_words.json`), lower case; absent: unknown. */
  knownWords?: readonly string[]
}

/** A loaded model: tokenizer, its sessions and the derived spec. */
export interface LoadedModel {
  spec: ModelSpec
  tokenizer: ClipTokenizer
  /** The tokenizer's files as read, for edges that serve the model without its sessions. */
  tokenizerFiles: ClipTokenizerFiles
  textEncoder: ModelSession
  unet: ModelSession
  vaeDecoder: ModelSession
  /** Present where the folder has `vae_encoder/` (image-to-image, inpainting). */
  vaeEncoder?: ModelSession
  /** Present where the folder has `controlnet/`. */
  controlnet?: ModelSession
}

/** What a model folder says without loading any weights: spec, tokenizer, each graph's I/O. */
export interface ModelDescription {
  spec: ModelSpec
  tokenizer: ClipTokenizer
  tokenizerFiles: ClipTokenizerFiles
  /** Per component present: graph metadata and the files (model and external data) it loads from. */
  components: Record<RequiredComponent, ComponentFiles> &
    Partial<Record<OptionalComponent, ComponentFiles>>
}

/** One component's graph metadata and files. */
export interface ComponentFiles {
  metadata: OnnxMetadata
  files: string[]
}

/** The ONNX components every model has. */
export type RequiredComponent = (typeof MODEL_FILES.components)[number]
/** The ONNX components a model may have. */
export type OptionalComponent = (typeof MODEL_FILES.optionalComponents)[number]
/** Any ONNX component of a model folder. */
export type Component = RequiredComponent | OptionalComponent

const DEFAULT_STEPS = 20
const DEFAULT_GUIDANCE = 7.5

/** Element types a float input or output of the UNet, VAE or text encoder may have. */
const FLOAT_TYPES: readonly string[] = Object.freeze(['float32', 'float16'])

/**
 * Loads a model folder onto a backend: `describeModelFolder`, then one session per component.
 * Where the backend reads files (onnxruntime-node) and the source is a folder on disk, sessions
 * are created from paths and no weight is read into JS memory. Throws `ModelLoadError` naming
 * the missing or bad file.
 */
export async function loadModel(
  source: ModelSource,
  backend: InferenceBackend,
): Promise<LoadedModel> {
  // One read of each file for the metadata, the digest and the session (where it needs bytes).
  source = readOnce(source)
  const description = await describeModelFolder(source)
  const sessions: Partial<Record<Component, ModelSession>> = {}
  for (const name of presentComponents(description)) {
    const path = `${name}/model.onnx`
    try {
      const onDisk = backend.readsFiles ? source.filePath?.(path) : undefined
      const model: ModelFile = onDisk
        ? { path: onDisk }
        : {
            bytes: await source.readBytes(path),
            externalData: await Promise.all(
              description.components[name]!.metadata.externalData.map(async (location) => ({
                path: location,
                data: await source.readBytes(`${name}/${location}`),
              })),
            ),
          }
      sessions[name] = await backend.createSession(model, { label: name })
      // The session holds its own copy (ORT's memory): drop ours now, not when loading ends, so
      // an isolate never holds every file in JS and every weight in WebAssembly at once.
      forgetBytes(source, [
        path,
        ...description.components[name]!.metadata.externalData.map((l) => `${name}/${l}`),
      ])
    } catch (e) {
      if (e instanceof ModelLoadError) throw e
      throw new ModelLoadError(`${source.label}: cannot load ${path}: ${(e as Error).message}`)
    }
  }
  return {
    spec: description.spec,
    tokenizer: description.tokenizer,
    tokenizerFiles: description.tokenizerFiles,
    textEncoder: sessions.text_encoder as ModelSession,
    unet: sessions.unet as ModelSession,
    vaeDecoder: sessions.vae_decoder as ModelSession,
    vaeEncoder: sessions.vae_encoder,
    controlnet: sessions.controlnet,
  }
}

/** The components a description has, required ones first. */
function presentComponents(description: ModelDescription): Component[] {
  return [...MODEL_FILES.components, ...MODEL_FILES.optionalComponents].filter(
    (name) => description.components[name],
  )
}

/**
 * Everything that can be known about a model folder before any weights are read: configs,
 * tokenizer, each ONNX graph's inputs and outputs (element types, ranks, channels) and its
 * external data files, the derived spec and the digest. Refuses a model the pipeline cannot
 * run here, at once. The edge uses this alone for a model whose sessions live on a backend.
 */
export async function describeModelFolder(source: ModelSource): Promise<ModelDescription> {
  // Configs and tokenizer files are parsed and also hashed for the digest: read each once.
  source = readOnce(source)
  const index = await readJson(source, MODEL_FILES.index)
  const schedulerConfig = await readJson<SchedulerConfig>(source, MODEL_FILES.scheduler)
  const tokenizerFiles: ClipTokenizerFiles = {
    vocabJson: await readText(source, MODEL_FILES.tokenizer.vocab),
    mergesTxt: await readText(source, MODEL_FILES.tokenizer.merges),
    tokenizerConfigJson: (await source.has(MODEL_FILES.tokenizer.config))
      ? await readText(source, MODEL_FILES.tokenizer.config)
      : undefined,
    specialTokensMapJson: (await source.has(MODEL_FILES.tokenizer.specialTokens))
      ? await readText(source, MODEL_FILES.tokenizer.specialTokens)
      : undefined,
  }
  const tokenizer = ClipTokenizer.fromFiles(tokenizerFiles)
  const unetConfig = await readJson(source, 'unet/config.json')
  const vaeConfig = await readJson(source, 'vae_decoder/config.json')

  const components = {} as ModelDescription['components']
  for (const name of [...MODEL_FILES.components, ...MODEL_FILES.optionalComponents]) {
    const path = `${name}/model.onnx`
    if (
      (MODEL_FILES.optionalComponents as readonly string[]).includes(name) &&
      !(await source.has(path))
    )
      continue
    const metadata = await readMetadata(source, path)
    for (const location of metadata.externalData) {
      if (location.includes('..') || location.startsWith('/'))
        throw new ModelLoadError(
          `${source.label}: ${path} names external data outside its folder (${location})`,
        )
      if (!(await source.has(`${name}/${location}`)))
        throw new ModelLoadError(
          `${source.label}: ${path} keeps weights in ${name}/${location}, which is missing`,
        )
    }
    components[name] = {
      metadata,
      files: [path, ...metadata.externalData.map((l) => `${name}/${l}`)],
    }
  }
  const textEncoder = components.text_encoder.metadata
  const unet = components.unet.metadata
  const vaeDecoder = components.vae_decoder.metadata
  const io = {
    inputIds: pick(textEncoder.inputs, 'text_encoder', ['input_ids']).name,
    hiddenStates: pick(textEncoder.outputs, 'text_encoder', ['last_hidden_state']).name,
    sample: pick(unet.inputs, 'unet', ['sample']).name,
    timestep: pick(unet.inputs, 'unet', ['timestep']).name,
    encoderHiddenStates: pick(unet.inputs, 'unet', ['encoder_hidden_states']).name,
    noisePred: pick(unet.outputs, 'unet', ['out_sample']).name,
    latentSample: pick(vaeDecoder.inputs, 'vae_decoder', ['latent_sample']).name,
    decoded: pick(vaeDecoder.outputs, 'vae_decoder', ['sample']).name,
  }
  const ids = pick(textEncoder.inputs, 'text_encoder', ['input_ids'])
  if (ids.type !== 'int32' && ids.type !== 'int64') {
    throw new ModelLoadError(
      `${source.label}: text_encoder input_ids has unsupported type ${ids.type}`,
    )
  }
  const floatType = (component: string, v: ValueInfo) => {
    if (!FLOAT_TYPES.includes(v.type))
      throw new ModelLoadError(
        `${source.label}: ${component} ${v.name} is ${v.type}; only float32 and float16 are supported`,
      )
    return v.type as 'float32' | 'float16'
  }
  const types = {
    hiddenStates: floatType(
      'text_encoder',
      pick(textEncoder.outputs, 'text_encoder', [io.hiddenStates]),
    ),
    sample: floatType('unet', pick(unet.inputs, 'unet', [io.sample])),
    encoderHiddenStates: floatType('unet', pick(unet.inputs, 'unet', [io.encoderHiddenStates])),
    noisePred: floatType('unet', pick(unet.outputs, 'unet', [io.noisePred])),
    latentSample: floatType(
      'vae_decoder',
      pick(vaeDecoder.inputs, 'vae_decoder', [io.latentSample]),
    ),
    decoded: floatType('vae_decoder', pick(vaeDecoder.outputs, 'vae_decoder', [io.decoded])),
  }
  const timestep = timestepInputOf(source.label, 'unet', pick(unet.inputs, 'unet', ['timestep']))

  const windowFromModel = ids.shape[1]
  const tokenWindow =
    typeof windowFromModel === 'number' ? windowFromModel : tokenizer.modelMaxLength
  if (tokenWindow !== tokenizer.modelMaxLength) {
    throw new ModelLoadError(
      `${source.label}: tokenizer model_max_length ${tokenizer.modelMaxLength} does not match the text encoder window ${tokenWindow}`,
    )
  }
  const ehs = pick(unet.inputs, 'unet', ['encoder_hidden_states'])
  const hiddenSize = numberOr(ehs.shape[2], numberOr(unetConfig.cross_attention_dim, NaN))
  const vaeBlocks = (vaeConfig.block_out_channels as number[] | undefined)?.length ?? 4
  const vaeScaleFactor = 2 ** (vaeBlocks - 1)
  const unetBlocks = (unetConfig.block_out_channels as number[] | undefined)?.length ?? 1
  const scalingFactor = numberOr(vaeConfig.scaling_factor, 0.18215)
  const sampleInput = pick(unet.inputs, 'unet', [io.sample])
  const unetInChannels = numberOr(sampleInput.shape[1], numberOr(unetConfig.in_channels, 4))
  const latentChannels = numberOr(
    pick(unet.outputs, 'unet', [io.noisePred]).shape[1],
    numberOr(unetConfig.out_channels, unetInChannels === 9 ? 4 : unetInChannels),
  )
  const conditionerIo = describeConditioners(source.label, components, unet, latentChannels)
  const sampleSize = numberOr(unetConfig.sample_size, 64) * vaeScaleFactor
  const d = (index._defaults ?? {}) as Record<string, unknown>
  const defaults: ModelDefaults = {
    steps: numberOr(d.num_inference_steps, DEFAULT_STEPS),
    guidanceScale: numberOr(d.guidance_scale, DEFAULT_GUIDANCE),
    scheduler: String(d.scheduler ?? schedulerConfig._class_name ?? 'PNDMScheduler'),
    width: numberOr(d.width, sampleSize),
    height: numberOr(d.height, sampleSize),
  }
  if (!Number.isFinite(hiddenSize)) {
    throw new ModelLoadError(
      `${source.label}: cannot tell the text hidden size from unet inputs or config`,
    )
  }
  const spec: ModelSpec = {
    id: modelId(index, source.label),
    digest: await digestModel(source, [
      ...Object.values(components).flatMap((c) => c.files),
      ...CONFIG_FILES,
    ]),
    tokenWindow,
    inputIdsType: ids.type,
    hiddenSize,
    latentChannels,
    unetInChannels,
    conditioners: conditionerIo.conditioners(unetInChannels),
    vaeScaleFactor,
    scalingFactor,
    sizeMultiple: vaeScaleFactor * 2 ** (unetBlocks - 1),
    sampleSize,
    timestep,
    io: { ...io, ...conditionerIo.io },
    types: { ...types, ...conditionerIo.types },
    componentBytes: await componentBytes(source, components),
    defaults,
    schedulerConfig,
    ...(await knownWordsOf(source)),
  }
  return { spec, tokenizer, tokenizerFiles, components }
}

/** `known_words.json`, where the folder has one: a list of words, else the model is refused. */
async function knownWordsOf(source: ModelSource): Promise<{ knownWords?: readonly string[] }> {
  if (!(await source.has(MODEL_FILES.knownWords))) return {}
  const { words } = await readJson<{ words?: unknown }>(source, MODEL_FILES.knownWords)
  if (!Array.isArray(words) || !words.every((w) => typeof w === 'string' && w))
    throw new ModelLoadError(
      `${source.label}: ${MODEL_FILES.knownWords} must hold {"words": [non-empty strings]}`,
    )
  return { knownWords: Object.freeze(words.map((w: string) => w.toLowerCase())) }
}

/**
 * The VAE encoder's and ControlNet's I/O, and what they let the model do. A VAE encoder must
 * output the posterior's parameters (`latent_parameters`, optimum's export): a legacy export whose
 * `latent_sample` output samples inside the graph cannot be seeded, so it is refused for
 * image-to-image with that reason. ControlNet outputs are wired to UNet inputs of the same name.
 */
function describeConditioners(
  label: string,
  components: ModelDescription['components'],
  unet: OnnxMetadata,
  latentChannels: number,
) {
  const io: Partial<ModelSpec['io']> & { residuals: string[] } = { residuals: [] }
  const types: Partial<ModelSpec['types']> = {}
  const floatOf = (component: string, v: ValueInfo) => {
    if (!FLOAT_TYPES.includes(v.type))
      throw new ModelLoadError(
        `${label}: ${component} ${v.name} is ${v.type}; only float32 and float16 are supported`,
      )
    return v.type as 'float32' | 'float16'
  }
  let encoder: true | { reason: string } = {
    reason: 'the model has no vae_encoder, so it cannot start from an image',
  }
  const vaeEncoder = components.vae_encoder?.metadata
  if (vaeEncoder) {
    const params = vaeEncoder.outputs.find((o) => o.name === 'latent_parameters')
    if (params) {
      const sample = pick(vaeEncoder.inputs, 'vae_encoder', ['sample'])
      io.encoderSample = sample.name
      io.latentParameters = params.name
      types.encoderSample = floatOf('vae_encoder', sample)
      types.latentParameters = floatOf('vae_encoder', params)
      const channels = params.shape[1]
      if (typeof channels === 'number' && channels !== 2 * latentChannels)
        throw new ModelLoadError(
          `${label}: vae_encoder latent_parameters has ${channels} channels; expected ${2 * latentChannels} (mean and log-variance)`,
        )
      encoder = true
    } else {
      encoder = {
        reason: `the model's vae_encoder outputs ${vaeEncoder.outputs.map((o) => o.name).join(', ')}: a legacy export that samples inside the graph, so the result could not follow the seed; re-export it with optimum (output latent_parameters)`,
      }
    }
  }
  const unetNames = new Set(unet.inputs.map((i) => i.name))
  let control: true | { reason: string } = {
    reason: 'the model has no controlnet, so it cannot follow a control image',
  }
  const controlnet = components.controlnet?.metadata
  if (controlnet) {
    const scale = controlnet.inputs.find((i) => i.name === 'conditioning_scale')
    if (scale && !['float32', 'float64', 'float16'].includes(scale.type))
      throw new ModelLoadError(`${label}: controlnet conditioning_scale is ${scale.type}`)
    const cond = pick(controlnet.inputs, 'controlnet', ['controlnet_cond'])
    io.controlnet = {
      sample: pick(controlnet.inputs, 'controlnet', ['sample']).name,
      timestep: pick(controlnet.inputs, 'controlnet', ['timestep']).name,
      timestepInput: timestepInputOf(
        label,
        'controlnet',
        pick(controlnet.inputs, 'controlnet', ['timestep']),
      ),
      encoderHiddenStates: pick(controlnet.inputs, 'controlnet', ['encoder_hidden_states']).name,
      cond: cond.name,
      scale: scale
        ? { name: scale.name, type: scale.type as 'float32' | 'float64' | 'float16' }
        : undefined,
    }
    types.controlCond = floatOf('controlnet', cond)
    const outputs = controlnet.outputs.map((o) => o.name)
    const unmatched = outputs.filter((name) => !unetNames.has(name))
    if (unmatched.length)
      throw new ModelLoadError(
        `${label}: controlnet outputs ${unmatched.join(', ')} have no UNet input of the same name (the OnnxStack layout is expected)`,
      )
    io.residuals = outputs
    control = true
  } else {
    const residuals = unet.inputs.filter((i) => i.name.endsWith('_additional_residual'))
    if (residuals.length)
      throw new ModelLoadError(
        `${label}: the unet takes ControlNet residuals (${residuals.map((r) => r.name).join(', ')}) but the model has no controlnet/`,
      )
  }
  return {
    io,
    types,
    conditioners(unetInChannels: number): Conditioners {
      const inpaintUnet = unetInChannels === 2 * latentChannels + 1
      if (!inpaintUnet && unetInChannels !== latentChannels)
        throw new ModelLoadError(
          `${label}: the unet takes ${unetInChannels} channels; expected ${latentChannels} or ${2 * latentChannels + 1} (inpainting)`,
        )
      const needsMask = {
        reason: 'this is an inpainting model: it needs an image and a mask',
      }
      return {
        imageToImage: inpaintUnet ? needsMask : encoder,
        inpainting: encoder === true ? (inpaintUnet ? 'unet' : 'blend') : encoder,
        controlNet: control,
        textToImage: inpaintUnet ? needsMask : true,
      }
    },
  }
}

/** How a model wants its timestep, from its input's metadata. */
function timestepInputOf(label: string, component: string, ts: ValueInfo): TimestepInput {
  if (!['float32', 'float16', 'int64', 'int32'].includes(ts.type)) {
    throw new ModelLoadError(`${label}: ${component} timestep has unsupported type ${ts.type}`)
  }
  return {
    type: ts.type as TimestepInput['type'],
    layout: ts.shape.length === 0 ? 'scalar' : ts.shape[0] === 1 ? 'one' : 'batch',
  }
}

/** The model's public id (see `ModelSpec.id`). */
function modelId(index: Record<string, unknown>, label: string): string {
  const named = index._name_or_path
  if (typeof named === 'string' && named.trim()) return named.trim()
  const segments = label.split(/[\\/]/).filter(Boolean)
  return segments[segments.length - 1] ?? label
}

/** Wraps a source so each file is read at most once during a load (its other members kept). */
function readOnce(source: ModelSource): ModelSource {
  if (READ_ONCE.has(source)) return source
  const seen = new Map<string, Promise<Uint8Array>>()
  const once: ModelSource = {
    ...source,
    readBytes(p) {
      let bytes = seen.get(p)
      if (!bytes) seen.set(p, (bytes = source.readBytes(p)))
      return bytes
    },
    // A file already read needs no second request for its size.
    ...(source.size
      ? {
          size: async (p: string) => {
            const bytes = seen.get(p)
            return bytes ? (await bytes).byteLength : source.size!(p)
          },
        }
      : {}),
  }
  READ_ONCE.add(once)
  FORGET.set(once, (p) => seen.delete(p))
  return once
}

/** Lets `readOnce`'s copies of these files go (a later read fetches them again). */
function forgetBytes(source: ModelSource, paths: readonly string[]): void {
  const forget = FORGET.get(source)
  for (const p of paths) forget?.(p)
}

/** How to drop a `readOnce` source's cached files. */
const FORGET = new WeakMap<ModelSource, (path: string) => void>()

/** Sources already wrapped by `readOnce`. */
const READ_ONCE = new WeakSet<ModelSource>()

function pick(list: readonly ValueInfo[], component: string, preferred: string[]): ValueInfo {
  const found =
    list.find((v) => preferred.includes(v.name)) ?? (list.length === 1 ? list[0] : undefined)
  if (!found) {
    throw new ModelLoadError(
      `${component} has no ${preferred.join('/')} (it has ${list.map((v) => v.name).join(', ')})`,
    )
  }
  return found
}

function numberOr(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback
}

const hex = (b: ArrayBuffer) =>
  [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('')

/** The small files that count towards the digest (where present) besides the ONNX files. */
const CONFIG_FILES = Object.freeze([
  MODEL_FILES.index,
  MODEL_FILES.scheduler,
  ...Object.values(MODEL_FILES.tokenizer),
  'unet/config.json',
  'vae_decoder/config.json',
  'text_encoder/config.json',
  'vae_encoder/config.json',
  'controlnet/config.json',
])

/**
 * SHA-256 over `path NUL sha256(content) LF` for every present file, sorted by path. JSON files
 * count by their canonical form (sorted keys, no whitespace), so the same model has the same
 * digest whether its configs come from disk or from bundled assets that re-serialise them. Other
 * files are hashed by the source where it can stream them (`ModelSource.sha256`), else here.
 */
async function digestModel(source: ModelSource, files: readonly string[]): Promise<string> {
  const lines: string[] = []
  for (const p of [...new Set(files)].sort()) {
    if (!(await source.has(p))) continue
    let sha: string
    if (p.endsWith('.json')) {
      const bytes = await source.readBytes(p)
      const canonical = canonicalJson(JSON.parse(new TextDecoder().decode(bytes)))
      sha = hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical)))
    } else if (source.sha256) sha = await source.sha256(p)
    else sha = hex(await crypto.subtle.digest('SHA-256', await source.readBytes(p)))
    lines.push(`${p}\0${sha}\n`)
  }
  return hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(lines.join(''))))
}

/** The bytes of each component's files, where the source tells sizes. */
async function componentBytes(
  source: ModelSource,
  components: ModelDescription['components'],
): Promise<Partial<Record<Component, number>>> {
  if (!source.size) return {}
  const out: Partial<Record<Component, number>> = {}
  for (const [name, { files }] of Object.entries(components) as [
    Component,
    { files: string[] },
  ][]) {
    let total = 0
    for (const f of files) total += await source.size(f)
    out[name] = total
  }
  return out
}

/** The graph metadata of `path`: by ranged reads where the source offers them. */
async function readMetadata(source: ModelSource, path: string): Promise<OnnxMetadata> {
  try {
    if (source.open) {
      const file = await source.open(path)
      try {
        return await readOnnxMetadata(file)
      } finally {
        await file.close()
      }
    }
    return await readOnnxMetadata(bytesReader(await source.readBytes(path)))
  } catch (e) {
    if (e instanceof ModelLoadError) throw e
    throw new ModelLoadError(
      `${source.label}: ${path} is not a readable ONNX model: ${(e as Error).message}`,
    )
  }
}

/** JSON with object keys sorted at every level. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v && typeof v === 'object') {
    const entries = Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(v)
}
