/**
 * @module
 * Configuration of the hosted-provider backend (Hugging Face Inference Providers or a dedicated
 * Inference Endpoint), read once from the worker's vars and validated here:
 * - `HF_TOKEN` (secret): enables it; sent as `Authorization: Bearer` to the provider;
 * - `HF_MODELS`: comma-separated Hugging Face model ids, served as `hf:<id>`;
 * - `HF_PROVIDER`: the inference provider (default `hf-inference`), or
 * - `HF_ENDPOINT_URL`: an Inference Endpoint URL (then `HF_MODELS` names the one model it serves);
 * - `HF_TIMEOUT_MS`: deadline of one generation (all its images), default 120 000.
 *
 * Hosted models have no tokenizer files here, so prompts are measured and keyed in UTF-8 bytes
 * (see `promptBytes`): a byte count bounds any byte-level BPE token count from above.
 */
import type { ModelInfo } from './types'
import { sha256Hex } from '../util'

/** The vars that configure the hosted-provider backend. */
export interface HostedEnv {
  HF_TOKEN?: string
  HF_MODELS?: string
  HF_PROVIDER?: string
  HF_ENDPOINT_URL?: string
  HF_TIMEOUT_MS?: string
}

/** Validated hosted-provider configuration. */
export interface HostedConfig {
  token: string
  /** Hugging Face model ids, in `HF_MODELS` order. */
  models: readonly string[]
  /** Provider name; undefined when an endpoint URL is used (the client forbids both). */
  provider?: string
  endpointUrl?: string
  timeoutMs: number
  /** Identifies this configuration (without the token), for the isolate's engine cache. */
  key: string
}

/** Prefix of hosted model ids in requests, so they never collide with local model folders. */
export const HOSTED_MODEL_PREFIX = 'hf:'

/** Provider used when `HF_PROVIDER` is unset: Hugging Face's own serverless inference. */
export const DEFAULT_HOSTED_PROVIDER = 'hf-inference'

/** Prompt limit of hosted models, in UTF-8 bytes (reported as `max_prompt_tokens`). */
export const HOSTED_PROMPT_BYTES = 1000

/** Request defaults of a hosted model; what its model card recommends. */
interface HostedPreset {
  steps: number
  guidance_scale: number
  size: number
  /** Multiple that width and height must be (16 for FLUX's 2x2-patched latents). */
  sizeMultiple: number
}

/** Model card defaults of well-known hosted models; others get `GENERIC_PRESET`. */
export const HOSTED_PRESETS: Readonly<Record<string, HostedPreset>> = Object.freeze({
  'stabilityai/sd-turbo': { steps: 1, guidance_scale: 0, size: 512, sizeMultiple: 8 },
  'stabilityai/sdxl-turbo': { steps: 1, guidance_scale: 0, size: 512, sizeMultiple: 8 },
  'stable-diffusion-v1-5/stable-diffusion-v1-5': {
    steps: 25,
    guidance_scale: 7.5,
    size: 512,
    sizeMultiple: 8,
  },
  'stabilityai/stable-diffusion-xl-base-1.0': {
    steps: 30,
    guidance_scale: 5,
    size: 1024,
    sizeMultiple: 8,
  },
  'black-forest-labs/FLUX.1-schnell': { steps: 4, guidance_scale: 0, size: 1024, sizeMultiple: 16 },
  'black-forest-labs/FLUX.1-dev': { steps: 28, guidance_scale: 3.5, size: 1024, sizeMultiple: 16 },
})

/** Defaults of a hosted model without a preset: Stable Diffusion 1.x/2.x-like. */
const GENERIC_PRESET: HostedPreset = { steps: 25, guidance_scale: 7.5, size: 512, sizeMultiple: 8 }

/** The only scheduler of hosted models: the provider picks its own, so requests cannot. */
export const HOSTED_SCHEDULER = 'default'

/**
 * Reads the hosted-provider configuration; undefined when `HF_TOKEN` is unset. Throws on a
 * configuration that cannot work, so a misconfigured deployment fails loudly at first use.
 */
export function hostedConfig(env: HostedEnv): HostedConfig | undefined {
  const token = env.HF_TOKEN?.trim()
  if (!token) return undefined
  const models = (env.HF_MODELS ?? '')
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean)
  if (!models.length) throw new Error('HF_TOKEN is set but HF_MODELS names no model')
  for (const m of models) {
    if (!/^[\w.-]+(\/[\w.-]+)?$/.test(m)) throw new Error(`HF_MODELS: invalid model id ${m}`)
  }
  const endpointUrl = env.HF_ENDPOINT_URL?.trim() || undefined
  const provider = env.HF_PROVIDER?.trim() || undefined
  if (endpointUrl) {
    if (provider) throw new Error('set HF_ENDPOINT_URL or HF_PROVIDER, not both')
    if (!/^https?:\/\//.test(endpointUrl)) throw new Error('HF_ENDPOINT_URL must be an http(s) URL')
    // One endpoint serves one model; several ids would be several cache identities for one model.
    if (models.length !== 1) throw new Error('with HF_ENDPOINT_URL, HF_MODELS names one model')
  }
  // `auto` lets the Hub pick a different provider over time, so the cache key (which includes
  // the provider) would no longer say what made an image.
  if (provider === 'auto') throw new Error('HF_PROVIDER must name one provider, not "auto"')
  const timeoutMs = env.HF_TIMEOUT_MS ? Number(env.HF_TIMEOUT_MS) : 120_000
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new Error('HF_TIMEOUT_MS must be a positive number')
  }
  const resolvedProvider = endpointUrl ? undefined : (provider ?? DEFAULT_HOSTED_PROVIDER)
  return {
    token,
    models,
    provider: resolvedProvider,
    endpointUrl,
    timeoutMs,
    key: JSON.stringify([resolvedProvider ?? null, endpointUrl ?? null, models, timeoutMs]),
  }
}

/** A hosted model: what the API shows, and the Hugging Face id sent to the provider. */
export interface HostedModel {
  info: ModelInfo
  hfModel: string
}

/** Why a hosted model takes no picture: the provider route used is text-to-image only. */
const HOSTED_TEXT_ONLY = 'hosted models are served through the text-to-image task only'

/**
 * The served hosted models. The digest is SHA-256 over provider, endpoint and model id: what
 * produces the images, so changing any of them changes every cache key. A provider updating
 * the weights behind an id is invisible here (bump `PIPELINE_VERSION` if that matters).
 */
export async function hostedModels(config: HostedConfig): Promise<HostedModel[]> {
  return Promise.all(
    config.models.map(async (hfModel) => {
      const preset = HOSTED_PRESETS[hfModel] ?? GENERIC_PRESET
      const digest = await sha256Hex(
        JSON.stringify({
          provider: config.provider ?? null,
          endpointUrl: config.endpointUrl ?? null,
          model: hfModel,
        }),
      )
      const info: ModelInfo = {
        id: HOSTED_MODEL_PREFIX + hfModel,
        digest,
        maxPromptTokens: HOSTED_PROMPT_BYTES,
        defaults: {
          steps: preset.steps,
          guidance_scale: preset.guidance_scale,
          scheduler: HOSTED_SCHEDULER,
          width: preset.size,
          height: preset.size,
        },
        limits: {
          maxWidth: 1024,
          maxHeight: 1024,
          sizeMultiple: preset.sizeMultiple,
          minSteps: 1,
          maxSteps: 50,
          minGuidance: 0,
          maxGuidance: 20,
          // Each image is one provider call (seed + i), billed by the provider.
          maxImages: 4,
        },
        schedulers: [HOSTED_SCHEDULER],
        options: [],
        conditioning: {
          text: true,
          image: HOSTED_TEXT_ONLY,
          mask: HOSTED_TEXT_ONLY,
          control_image: HOSTED_TEXT_ONLY,
        },
      }
      return { info, hfModel }
    }),
  )
}

/**
 * A prompt as sent to a hosted model: at most `HOSTED_PROMPT_BYTES` UTF-8 bytes, cut at a
 * character boundary. `nBytes` is the length before cutting (what the limit check compares).
 */
export function promptBytes(text: string): { text: string; bytes: Uint8Array; nBytes: number } {
  const all = new TextEncoder().encode(text)
  if (all.length <= HOSTED_PROMPT_BYTES) return { text, bytes: all, nBytes: all.length }
  let end = HOSTED_PROMPT_BYTES
  // Back off over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && (all[end] & 0xc0) === 0x80) end--
  const bytes = all.subarray(0, end)
  return { text: new TextDecoder().decode(bytes), bytes, nBytes: all.length }
}
