/**
 * @module
 * The hosted-provider engine: forwards generations to Hugging Face Inference Providers (or an
 * Inference Endpoint) with `@huggingface/inference`'s `textToImage`, one call per image with
 * seed + i. It sits behind the same validation, cache key and single-flight coordinator as the
 * other engines; only `generate` leaves the worker.
 *
 * Images are stored and served as PNG, so the engine asks for PNG (`Accept: image/png`, which
 * Inference Endpoints and `hf-inference` honour) and refuses anything else with a 502 rather
 * than store JPEG bytes under a PNG name. Failures are `BackendError`s: 502 for an error
 * answer or a malformed image, 503 for an unreachable or overloaded provider, 504 past the
 * deadline.
 *
 * @example
 * const engine = await createHostedEngine(hostedConfig({ HF_TOKEN: 'hf_…', HF_MODELS: 'stabilityai/sd-turbo' })!)
 * const [png] = await engine.generate({ model: 'hf:stabilityai/sd-turbo', prompt: 'a red fox', … })
 */
import { pngSize } from '../pipeline/png'
import type { GeneratedImage, GenerateRequest, TextToImageEngine, TokenizedPrompt } from './types'
import { hostedModels, promptBytes, type HostedConfig, type HostedModel } from './hosted-models'
import { BackendError } from './errors'

/** The client library, loaded on first use so deployments without a token never evaluate it. */
const loadClient = () => import('@huggingface/inference')

/** An engine serving the configured hosted models. Rejects on an unknown provider name. */
export async function createHostedEngine(config: HostedConfig): Promise<TextToImageEngine> {
  const client = await loadClient()
  if (
    config.provider &&
    !(client.INFERENCE_PROVIDERS as readonly string[]).includes(config.provider)
  ) {
    throw new Error(
      `HF_PROVIDER ${JSON.stringify(config.provider)} is not one of ${client.INFERENCE_PROVIDERS.join(', ')}`,
    )
  }
  const models = await hostedModels(config)
  const byId = new Map(models.map((m) => [m.info.id, m]))
  const served = (id: string): HostedModel => {
    const m = byId.get(id)
    if (!m) throw new RangeError(`unknown model ${JSON.stringify(id)}`)
    return m
  }

  return {
    models: () => models.map((m) => m.info),
    tokenize(model, text): TokenizedPrompt {
      served(model)
      // The prompt's UTF-8 bytes stand in for token ids: the cache key then holds exactly the
      // text the provider receives (after any cut), and the byte count bounds its token count.
      const p = promptBytes(text)
      return {
        inputIds: Array.from(p.bytes),
        nTokens: p.nBytes,
        truncated: p.bytes.length < p.nBytes,
      }
    },
    async generate(req, { signal, onProgress } = {}) {
      const m = served(req.model)
      const deadline = AbortSignal.timeout(config.timeoutMs)
      const sig = AbortSignal.any([deadline, ...(signal ? [signal] : [])])
      const images: GeneratedImage[] = []
      for (let i = 0; i < req.n; i++) {
        const seed = req.seed + i
        let bytes: Uint8Array
        try {
          const blob = await client.textToImage(
            {
              accessToken: config.token,
              model: m.hfModel,
              // The client refuses a provider together with an endpoint URL.
              ...(config.endpointUrl
                ? { endpointUrl: config.endpointUrl }
                : { provider: config.provider as (typeof client.INFERENCE_PROVIDERS)[number] }),
              inputs: promptBytes(req.prompt).text,
              parameters: providerParameters(req, seed),
            },
            { outputType: 'blob', signal: sig, retry_on_error: false, fetch: acceptPng },
          )
          bytes = new Uint8Array(await blob.arrayBuffer())
        } catch (e) {
          signal?.throwIfAborted()
          throw providerFailure(e, deadline.aborted, m.hfModel)
        }
        const size = pngSize(bytes)
        if (!size) {
          throw new BackendError(
            502,
            `hosted model ${m.hfModel} sent ${bytes.length} bytes that are not a PNG image`,
          )
        }
        images.push({ bytes, contentType: 'image/png', seed, ...size })
        onProgress?.({ step: req.steps, totalSteps: req.steps, image: i })
      }
      return images
    },
  }
}

/**
 * Serves `base`'s models and the hosted ones side by side: `base` keeps the first (default)
 * model, hosted models are chosen with `model: "hf:<id>"`.
 */
export function withHostedModels(
  base: TextToImageEngine,
  hosted: TextToImageEngine,
): TextToImageEngine {
  const isHosted = (id: string) => hosted.models().some((m) => m.id === id)
  return {
    models: () => [...base.models(), ...hosted.models()],
    tokenize: (model, text) => (isHosted(model) ? hosted : base).tokenize(model, text),
    generate: (req, options) => (isHosted(req.model) ? hosted : base).generate(req, options),
  }
}

/** The Hugging Face text-to-image parameters of one image. */
function providerParameters(req: GenerateRequest, seed: number) {
  return {
    // Some providers reject an empty negative prompt; omitting it means the same.
    ...(req.negativePrompt ? { negative_prompt: promptBytes(req.negativePrompt).text } : {}),
    guidance_scale: req.guidanceScale,
    num_inference_steps: req.steps,
    width: req.width,
    height: req.height,
    seed,
  }
}

/**
 * `fetch` for the client that asks for PNG on the inference call (POST) only; the Hub's JSON
 * model-mapping lookup (GET) keeps its headers.
 */
const acceptPng: typeof fetch = (input, init) => {
  if (init?.method !== 'POST') return fetch(input, init)
  const headers = new Headers(init.headers)
  headers.set('Accept', 'image/png')
  return fetch(input, { ...init, headers })
}

/** Maps a client or network failure to the status the API client should see. */
function providerFailure(e: unknown, timedOut: boolean, model: string): BackendError {
  const err = e as Error & { httpResponse?: { status?: number } }
  if (timedOut) return new BackendError(504, `hosted model ${model} did not answer in time`)
  const status = err.httpResponse?.status
  if (err.name === 'ProviderApiError' && status) {
    const mapped =
      status === 504 || status === 408 ? 504 : status === 503 || status === 429 ? 503 : 502
    return new BackendError(mapped, `hosted model ${model}: provider answered ${status}`)
  }
  // `fetch` rejects with a TypeError when the provider cannot be reached at all.
  if (err.name === 'TypeError') {
    return new BackendError(503, `hosted model ${model}: provider unreachable: ${err.message}`)
  }
  return new BackendError(502, `hosted model ${model}: ${err.name}: ${err.message}`)
}
