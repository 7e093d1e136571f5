/**
 * @module
 * The edge side of the GPU backend: tokenizes prompts here and encodes them here or on the
 * backend (`./placement`), sends the denoise job to a backend over HTTP, signed and idempotent,
 * and fails over between backends, healthy ones first (`./health`: a circuit breaker per backend
 * and the Cron Trigger's shared probes). Failures surface as `BackendError` with the status the
 * client should see: 502 (bad or refused response), 503 (no backend reachable), 504 (deadline).
 */
import { pngSize } from '../pipeline/png'
import type { StableDiffusionPipeline } from '../pipeline/stable-diffusion'
import { BackendError, EngineError, nonFiniteFailure, rejectedFailure } from './errors'
import type { ManifestModel } from './backend-models'
import { describeModel } from './local-engine'
import type { GeneratedImage, TextToImageEngine } from './types'
import { overloadedFailure } from './queue'
import { CircuitBreaker, probeBackend, rankBackends, type HealthRecord } from './health'
import type { TextEncoderPlacement } from './placement'
import {
  encodeJob,
  verifyAnswer,
  jobOf,
  FRAMES_CONTENT_TYPE,
  HEADERS,
  JOB_CONTENT_TYPE,
  ProtocolError,
  readFrames,
  signRequest,
} from '../backend/protocol'
import { float32, integers, type Tensor } from '../pipeline/tensor'
import { sha256Hex } from '../util'

/**
 * A model the remote engine serves: a local pipeline (whose text encoder may run here), or a
 * model known only from its backend's manifest (`./backend-models`; encoded on the backend).
 */
export type RemoteServable =
  | Pick<StableDiffusionPipeline, 'spec' | 'tokenize' | 'encodePrompt'>
  | (ManifestModel & { encodePrompt?: undefined })

/**
 * Whole-job deadline unless `GPU_BACKEND_TIMEOUT_MS` says otherwise: long enough for a
 * full-size model on a CPU-only backend (a 512x512 SD 1.5 step takes ~10-20 s on 2 cores).
 */
export const DEFAULT_TIMEOUT_MS = 10 * 60_000

/** Options of `createRemoteEngine`. */
export interface RemoteEngineOptions {
  /** Backend base URLs, tried in order (healthy first). */
  urls: readonly string[]
  secret: string
  /** Whole-job deadline. */
  timeoutMs?: number
  /** How long a backend that failed is skipped after its first failure (doubles per failure). */
  downForMs?: number
  /** Cap of that backoff. */
  maxDownForMs?: number
  /** Timeout of the `/healthz` probe that lets a skipped backend back in. */
  probeTimeoutMs?: number
  /** `fetch` to use (a service binding's `fetch`, or the global one). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>
  /** Where each model's text encoder runs (by model id; `edge` when absent). */
  textEncoder?: Readonly<Record<string, TextEncoderPlacement>>
  /** The latest shared probes (the Cron Trigger's, from KV), to order backends healthy-first. */
  health?: () => Promise<Readonly<Record<string, HealthRecord>>>
}

/** An engine that runs the denoising loop on a GPU backend (the text encoder where placed). */
export function createRemoteEngine(
  models: readonly RemoteServable[],
  options: RemoteEngineOptions,
): TextToImageEngine {
  if (!options.urls.length) throw new Error('createRemoteEngine needs at least one backend URL')
  if (!options.secret) throw new Error('createRemoteEngine needs the backend secret')
  const byId = new Map(models.map((m) => [m.spec.id, m]))
  const infos = Object.freeze(models.map(describeModel))
  const doFetch = options.fetch ?? ((u, i) => fetch(u, i))
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const baseMs = options.downForMs ?? 5_000
  const breaker = new CircuitBreaker({ baseMs, maxMs: options.maxDownForMs ?? 12 * baseMs })
  const probeTimeoutMs = options.probeTimeoutMs ?? 2_000
  // Why each open circuit opened: while it stays open, clients get that failure's status
  // (503 unreachable, 502 failing or garbage), not a different one for the same backend.
  const lastFailure = new Map<string, BackendError>()
  const fail = (base: string, error: BackendError) => {
    breaker.failure(base)
    lastFailure.set(base, error)
    return error
  }

  return {
    models: () => infos,
    tokenize(model, text) {
      const m = byId.get(model)
      if (!m) throw new RangeError(`unknown model ${JSON.stringify(model)}`)
      const enc = m.tokenize(text, true)
      return { inputIds: enc.inputIds, nTokens: enc.nTokens, truncated: enc.truncated }
    },
    async generate(req, { signal, onProgress } = {}) {
      const pipe = byId.get(req.model)
      if (!pipe) throw new RangeError(`unknown model ${JSON.stringify(req.model)}`)
      const spec = pipe.spec
      const tensors = await jobTensors(pipe, req, options.textEncoder?.[req.model] ?? 'edge')
      const body = encodeJob(jobOf(req, spec.digest, tensors))
      const key = await sha256Hex(body)
      const deadline = Date.now() + timeoutMs
      const shared = (await options.health?.().catch(() => undefined)) ?? {}
      const order = rankBackends(options.urls, shared, spec.digest)
      let last: BackendError = new BackendError(503, 'no GPU backend is reachable')
      const retried = new Set<string>()
      let busy: number | undefined
      for (let i = 0; i < order.length; i++) {
        const base = order[i]
        if (Date.now() >= deadline)
          throw new BackendError(504, 'the GPU backend did not finish before the deadline')
        const admitted = await breaker.admit(base, async () => {
          const r = await probeBackend(
            base,
            doFetch,
            Math.min(probeTimeoutMs, deadline - Date.now()),
          )
          return r.healthy && r.digests.includes(spec.digest)
        })
        if (!admitted) {
          const why = lastFailure.get(base)
          last = new BackendError(
            why?.status ?? 503,
            `GPU backend ${base} is marked down (circuit open)${why ? ` after: ${why.message}` : ''}`,
          )
          continue
        }
        const url = new URL('/v1/jobs', base).toString()
        const ts = Date.now()
        const sig = AbortSignal.any([
          AbortSignal.timeout(Math.max(1, deadline - ts)),
          ...(signal ? [signal] : []),
        ])
        let res: Response
        try {
          res = await doFetch(url, {
            method: 'POST',
            body,
            signal: sig,
            headers: {
              'content-type': JOB_CONTENT_TYPE,
              [HEADERS.timestamp]: String(ts),
              [HEADERS.signature]: await signRequest(
                options.secret,
                ts,
                new URL(url).pathname,
                body,
              ),
              [HEADERS.deadline]: String(deadline),
              [HEADERS.idempotency]: key,
            },
          })
        } catch (e) {
          signal?.throwIfAborted()
          if ((e as Error).name === 'TimeoutError')
            throw new BackendError(504, `GPU backend ${base} timed out`)
          // A connection dropped before any answer (workerd: "Network connection lost") is tried
          // once more on the same backend before failing over: the job is idempotent by key.
          if (!retried.has(base)) {
            retried.add(base)
            order.splice(i + 1, 0, base)
            continue
          }
          last = fail(
            base,
            new BackendError(503, `GPU backend ${base} is unreachable: ${(e as Error).message}`),
          )
          continue
        }
        const busyFor = Number(res.headers.get('retry-after'))
        if (res.status === 503 && busyFor > 0) {
          // A full queue (`src/backend/service.ts` admission): healthy, only busy. Try the next
          // backend without opening this one's circuit; if all are full, say when to come back.
          await res.body?.cancel()
          busy = Math.min(busy ?? Infinity, busyFor)
          continue
        }
        if (res.status >= 500 && res.status !== 504) {
          // The backend is up but failing (or still loading): try the next; the job is idempotent.
          last = fail(base, new BackendError(502, `GPU backend ${base} answered ${res.status}`))
          await res.body?.cancel()
          continue
        }
        if (!res.ok || res.headers.get('content-type') !== FRAMES_CONTENT_TYPE || !res.body) {
          await res.body?.cancel()
          throw new BackendError(
            res.status === 504 ? 504 : 502,
            `GPU backend ${base} refused the job (${res.status})`,
          )
        }
        try {
          const images = await readImages(res.body, base, req.n, onProgress, signal, (p, s) =>
            verifyAnswer(options.secret, key, p, s),
          )
          breaker.success(base)
          lastFailure.delete(base)
          return images
        } catch (e) {
          // Garbage or a failed run: keep jobs away for a while. A deadline (504) is not the
          // backend's fault, and a retry with the same key should be able to join its run there.
          if (e instanceof BackendError && e.status !== 504) fail(base, e)
          throw e
        }
      }
      if (busy !== undefined)
        throw new EngineError(
          overloadedFailure(busy, `every GPU backend's queue is full; retry in about ${busy} s`),
        )
      throw last
    },
  }
}

/** The job's tensors: hidden states encoded here, or token ids for the backend to encode. */
async function jobTensors(
  pipe: RemoteServable,
  req: Parameters<TextToImageEngine['generate']>[0],
  placement: TextEncoderPlacement,
): Promise<Record<string, Tensor>> {
  const spec = pipe.spec
  const cfg = req.guidanceScale > 1
  if (placement === 'backend' || !pipe.encodePrompt) {
    const rows = [req.prompt, ...(cfg ? [req.negativePrompt] : [])].map(
      (text) => pipe.tokenize(text, req.truncate).inputIds,
    )
    return { input_ids: integers('int32', rows.flat(), [rows.length, spec.tokenWindow]) }
  }
  const dims = [spec.tokenWindow, spec.hiddenSize]
  const encode = pipe.encodePrompt.bind(pipe)
  return {
    prompt_embeds: float32(await encode(req.prompt, req.truncate), dims),
    ...(cfg
      ? {
          negative_prompt_embeds: float32(await encode(req.negativePrompt, req.truncate), dims),
        }
      : {}),
  }
}

async function readImages(
  body: ReadableStream<Uint8Array>,
  base: string,
  n: number,
  onProgress: ((p: { step: number; totalSteps: number; image: number }) => void) | undefined,
  signal: AbortSignal | undefined,
  verify: (payloads: Uint8Array[], signature: string) => Promise<boolean>,
): Promise<GeneratedImage[]> {
  const images: GeneratedImage[] = []
  const payloads: Uint8Array[] = []
  try {
    for await (const f of readFrames(body)) {
      if (f.kind === 'P') onProgress?.(f.progress)
      else if (f.kind === 'I') {
        if (!pngSize(f.png))
          throw new BackendError(502, `GPU backend ${base} sent an image that is not a PNG`)
        images.push({ bytes: f.png, contentType: 'image/png', ...f.meta })
        payloads.push(f.payload)
      } else if (f.kind === 'E' && f.error.type === 'generation-non-finite')
        throw new EngineError(nonFiniteFailure(`GPU backend ${base}: ${f.error.detail}`))
      else if (f.kind === 'E' && f.error.status === 422)
        throw new EngineError(rejectedFailure(`GPU backend ${base}: ${f.error.detail}`))
      else if (f.kind === 'E')
        throw new BackendError(
          f.error.status === 504 ? 504 : 502,
          `GPU backend ${base}: ${f.error.detail}`,
        )
      else if (f.kind === 'D') {
        // Nothing is cached that the backend did not sign for this very job.
        if (!(await verify(payloads, f.signature)))
          throw new BackendError(502, `GPU backend ${base} sent an answer whose signature fails`)
        if (images.length !== n)
          throw new BackendError(502, `GPU backend ${base} sent ${images.length} of ${n} images`)
        return images
      }
    }
  } catch (e) {
    // The caller left: that is no failure of the backend (and must not open its circuit).
    signal?.throwIfAborted()
    if (e instanceof EngineError) throw e
    if ((e as Error).name === 'TimeoutError')
      throw new BackendError(504, `GPU backend ${base} timed out`)
    // Bytes that do not parse (bad frames, JSON, extents) are garbage from the backend.
    if (e instanceof ProtocolError || e instanceof SyntaxError || e instanceof RangeError)
      throw new BackendError(502, `GPU backend ${base} sent a malformed response: ${e.message}`)
    // The connection broke mid-answer: the backend died or was cut off, it did not misbehave.
    throw new BackendError(
      503,
      `GPU backend ${base} went away during the job: ${(e as Error).message}`,
    )
  }
  throw new BackendError(503, `GPU backend ${base} ended the response before it was done`)
}
