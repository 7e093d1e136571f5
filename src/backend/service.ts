/**
 * @module
 * The GPU backend service: a Hono app that holds loaded pipelines and runs denoise jobs sent by
 * the edge (text embeddings in, PNGs out), streaming step progress as it goes. With `batch`,
 * compatible jobs waiting for a run slot run together, one UNet call per step (`./batcher`).
 * Runtime-neutral; `scripts/gpu-server.ts` serves it on Node with onnxruntime-node (webgpu /
 * cuda / cpu).
 */
import { Hono } from 'hono'
import type { StableDiffusionPipeline } from '../pipeline/stable-diffusion'
import {
  createPipelineEngine,
  toPipelineParams,
  type LocalEngine,
  type PromptEmbeddings,
} from '../engine/local-engine'
import {
  decodeJob,
  requestOf,
  signAnswer,
  frame,
  FRAMES_CONTENT_TYPE,
  HEADERS,
  imagePayload,
  JOB_CONTENT_TYPE,
  ProtocolError,
  signResponse,
  checkSignatureHeaders,
  verifyRequest,
  type Job,
} from './protocol'
import { readCapped, sha256Hex } from '../util'
import { checkBatchOptions, JobBatcher, type BatchOptions } from './batcher'
import { EngineError } from '../engine/errors'
import type { BackendReadiness } from '../engine/health'
import { BACKEND_QUEUE, GenerationQueue, type QueueOptions } from '../engine/queue'
import type { GeneratedImage, GenerateRequest, GenerationProgress } from '../engine/types'
import { asFloat32 } from '../pipeline/tensor'

/** Options of `createBackendApp`. */
export interface BackendOptions {
  /** The served models, or their load in progress: until it settles `/healthz` answers 503. */
  models: readonly StableDiffusionPipeline[] | Promise<readonly StableDiffusionPipeline[]>
  /** Shared secret for request signatures (HMAC-SHA256). */
  secret: string
  /** How long a finished job's result is kept for retries with the same idempotency key. */
  resultTtlMs?: number
  /** Name of the execution provider chain, reported by /healthz. */
  provider?: string
  /** Called when a job starts running (not when it is joined or replayed); for metrics and tests. */
  onJobStart?: (key: string) => void
  /**
   * How long a run whose every client went away waits for one to come back (the edge retries a
   * dropped connection once) before it is cancelled. Default 5 s.
   */
  abandonGraceMs?: number
  /** Runs at once and runs waiting (`BACKEND_QUEUE` by default); a job beyond them gets 503. */
  queue?: QueueOptions
  /**
   * Batching of compatible jobs into one UNet call per step (`./batcher`); off when absent. A
   * batch takes one run slot; jobs joining a waiting batch take no queue place.
   */
  batch?: BatchOptions
  /** Called when a batch starts with the run keys of its jobs (only with `batch`); for tests. */
  onBatch?: (keys: readonly string[]) => void
}

interface Image {
  meta: { seed: number; width: number; height: number }
  png: Uint8Array
}

interface Run {
  result: Promise<Image[]>
  listeners: Set<(p: object) => void>
  /** Set once the result settles, either way. */
  settled: boolean
  finishedAt?: number
  /** Stops the generation at its next step. */
  cancel(reason: Error): void
}

/** Largest job body: prompt tensors plus up to three pictures of 2048² (RGB, a mask 1 B/px). */
export const MAX_JOB_BYTES = (1 << 20) + 7 * 2048 * 2048

/** Builds the backend app. */
export function createBackendApp(options: BackendOptions): Hono {
  if (!options.secret) throw new Error('the backend needs a shared secret (TTI_BACKEND_SECRET)')
  const ttl = options.resultTtlMs ?? 10 * 60_000
  let engine: LocalEngine | undefined
  let status: BackendReadiness['status'] = 'loading'
  let loadError: string | undefined
  Promise.resolve(options.models).then(
    (models) => {
      engine = createPipelineEngine(models)
      status = 'ready'
    },
    (e: Error) => {
      status = 'failed'
      loadError = e.message
    },
  )
  const stats = { started: 0, running: 0, promptsEncoded: 0, cancelled: 0 }
  const graceMs = options.abandonGraceMs ?? 5_000
  // A run nobody streams any more (every edge connection to it closed) is cancelled after the
  // grace period: on a slow backend that is minutes of work nobody would receive.
  const abandoned = (run: Run) =>
    setTimeout(() => {
      if (run.settled || run.listeners.size > 0) return
      stats.cancelled++
      run.cancel(
        Object.assign(new Error('every client of this job went away'), { name: 'AbortError' }),
      )
    }, graceMs)
  const runs = new Map<string, Run>()
  // Admission control: runs start in arrival order; a full queue refuses new jobs at once with
  // 503 + Retry-After, and the edge tries its next backend (a busy backend is not a failing one).
  const queue = new GenerationQueue(options.queue ?? BACKEND_QUEUE)
  const batching = options.batch && checkBatchOptions(options.batch)
  const batcher =
    batching &&
    new JobBatcher<Member, GeneratedImage[]>(queue, batching, (members) => {
      options.onBatch?.(members.map((m) => m.key))
      return runBatch(engine!, members, stats)
    })
  const app = new Hono()

  const problem = (status: number, title: string, detail: string) =>
    new Response(
      JSON.stringify({
        type: `urn:tti:backend:${title.toLowerCase().replace(/\W+/g, '-')}`,
        title,
        status,
        detail,
      }),
      {
        status,
        headers: { 'content-type': 'application/problem+json' },
      },
    )

  // Readiness, not just liveness: 503 until the models are loaded, so probes and load balancers
  // keep jobs away from a backend that would refuse them.
  app.get('/healthz', (c) => {
    const report: BackendReadiness = {
      ready: status === 'ready',
      status,
      provider: options.provider,
      models: (engine?.models() ?? []).map((m) => ({ id: m.id, digest: m.digest })),
      jobs: { ...stats },
      ...(loadError ? { error: loadError } : {}),
    }
    return c.json(report, status === 'ready' ? 200 : 503)
  })

  // A model's manifest, for an edge that serves the model without loading it: its spec and
  // tokenizer files. Signed both ways: the edge trusts it to validate and key requests.
  app.get('/v1/models/:id/manifest', async (c) => {
    const path = new URL(c.req.url).pathname
    const check = await verifyRequest(
      options.secret,
      { timestamp: c.req.header(HEADERS.timestamp), signature: c.req.header(HEADERS.signature) },
      path,
      new Uint8Array(0),
    )
    if (check !== 'ok') return problem(401, 'Unauthorized', `request signature ${check}`)
    if (status !== 'ready' || !engine) {
      const res = problem(503, 'Service Unavailable', `the backend is ${status}`)
      res.headers.set('retry-after', '5')
      return res
    }
    const id = c.req.param('id')
    if (!engine.models().some((m) => m.id === id))
      return problem(404, 'Not Found', `this backend does not serve ${id}`)
    const pipeline = engine.pipeline(id)
    const body = new TextEncoder().encode(
      JSON.stringify({ spec: pipeline.spec, tokenizer: pipeline.tokenizerFiles }),
    )
    const ts = Date.now()
    return new Response(body, {
      headers: {
        'content-type': 'application/json',
        [HEADERS.timestamp]: String(ts),
        [HEADERS.signature]: await signResponse(options.secret, ts, path, body),
      },
    })
  })

  app.post('/v1/jobs', async (c) => {
    if (c.req.header('content-type') !== JOB_CONTENT_TYPE)
      return problem(415, 'Unsupported Media Type', `expected ${JOB_CONTENT_TYPE}`)
    // Refuse what can be refused before reading a byte of an unauthenticated body: a declared
    // size over the limit, and missing or stale signature headers.
    const tooLarge = () =>
      problem(413, 'Payload Too Large', `jobs are at most ${MAX_JOB_BYTES} bytes`)
    if (Number(c.req.header('content-length') ?? 0) > MAX_JOB_BYTES) return tooLarge()
    const signature = {
      timestamp: c.req.header(HEADERS.timestamp),
      signature: c.req.header(HEADERS.signature),
    }
    const early = checkSignatureHeaders(signature)
    if (early !== 'ok') return problem(401, 'Unauthorized', `request signature ${early}`)
    const body = await readCapped(c.req.raw.body, MAX_JOB_BYTES)
    if (!body) return tooLarge()
    const check = await verifyRequest(options.secret, signature, new URL(c.req.url).pathname, body)
    if (check !== 'ok') return problem(401, 'Unauthorized', `request signature ${check}`)
    if (status !== 'ready' || !engine) {
      const res = problem(503, 'Service Unavailable', `the backend is ${status}`)
      res.headers.set('retry-after', '5')
      return res
    }
    let job: Job
    try {
      job = decodeJob(body)
      requestOf(job) // checks the pictures' tensors against the header
    } catch (e) {
      return problem(400, 'Bad Request', (e as ProtocolError).message)
    }
    const served = engine.models().find((m) => m.id === job.header.model)
    if (!served || served.digest !== job.header.digest)
      return problem(
        409,
        'Conflict',
        `this backend does not serve ${job.header.model}@${job.header.digest.slice(0, 12)}`,
      )
    const deadline = Number(c.req.header(HEADERS.deadline) ?? Date.now() + 300_000)
    // Runs are keyed by the signed body itself: an unsigned header could name another job's run.
    const key = await sha256Hex(body)

    sweep(runs, ttl)
    let run = runs.get(key)
    const batchKey = batcher && !run ? batchKeyOf(engine, job) : undefined
    if (!run && queue.full && !(batchKey && batcher!.canJoin(batchKey)))
      return c.text(`every run slot is taken and ${queue.depth.waiting} jobs wait`, 503, {
        'Retry-After': String(queue.retryAfterSeconds()),
      })
    if (!run) {
      const batched = batchKey ? { batcher: batcher!, batchKey } : undefined
      run = startRun(engine, queue, { key, job, deadline }, stats, batched)
      stats.started++
      stats.running++
      options.onJobStart?.(key)
      runs.set(key, run)
      const r = run
      r.result.then(
        () => {
          stats.running--
          r.settled = true
          r.finishedAt = Date.now()
        },
        () => {
          stats.running--
          r.settled = true
          runs.delete(key) // failures are not kept: a retry runs again
        },
      )
    }
    return new Response(
      streamRun(run, abandoned, (images) => signAnswer(options.secret, key, images)),
      {
        headers: { 'content-type': FRAMES_CONTENT_TYPE },
      },
    )
  })
  return app
}

function sweep(runs: Map<string, Run>, ttl: number): void {
  const now = Date.now()
  for (const [k, r] of runs)
    if (r.finishedAt !== undefined && now - r.finishedAt > ttl) runs.delete(k)
}

/** A job as a batch sees it: its request, its own signal and progress. */
interface Member {
  key: string
  job: Job
  req: GenerateRequest
  signal: AbortSignal
  progress(p: GenerationProgress): void
}

/**
 * The batch of a job, or undefined where it runs alone: jobs the pipeline refuses, whose error
 * its own run reports.
 */
function batchKeyOf(engine: LocalEngine, job: Job): string | undefined {
  try {
    return engine.pipeline(job.header.model).batchKey(toPipelineParams(requestOf(job)))
  } catch {
    return undefined
  }
}

/**
 * Runs members of one batch key together: each through the same engine code as alone (PNG
 * parameters included), on views of the pipeline whose UNet calls merge (`inBatch`).
 */
function runBatch(
  engine: LocalEngine,
  members: Member[],
  stats: { promptsEncoded: number },
): Promise<GeneratedImage[]>[] {
  const generate = async (m: Member, local: LocalEngine) =>
    local.generate(m.req, {
      signal: m.signal,
      embeddings: await embeddings(engine, m.job, stats),
      onProgress: m.progress,
    })
  if (members.length === 1) return [generate(members[0], engine)]
  const views = engine.pipeline(members[0].req.model).inBatch(members.length)
  return members.map(async (m, i) => {
    try {
      return await generate(m, createPipelineEngine([views[i]]))
    } finally {
      views[i].leaveBatch() // e.g. its embeddings failed: the others must not wait for it
    }
  })
}

function startRun(
  engine: LocalEngine,
  queue: GenerationQueue,
  { key, job, deadline }: { key: string; job: Job; deadline: number },
  stats: { promptsEncoded: number },
  batched?: { batcher: JobBatcher<Member, GeneratedImage[]>; batchKey: string },
): Run {
  const listeners = new Set<(p: object) => void>()
  const req = requestOf(job)
  const cancel = new AbortController()
  const signal = AbortSignal.any([
    AbortSignal.timeout(Math.max(0, deadline - Date.now())),
    cancel.signal,
  ])
  const progress = (p: GenerationProgress) => listeners.forEach((l) => l(p))
  const onQueued = (queuePosition: number) =>
    progress({ step: 0, totalSteps: req.steps, image: 0, queuePosition })
  const result = (async () => {
    const images = batched
      ? await batched.batcher.submit(
          batched.batchKey,
          { key, job, req, signal, progress },
          { signal, onQueued },
        )
      : await queue.run(
          async () =>
            engine.generate(req, {
              signal,
              embeddings: await embeddings(engine, job, stats),
              onProgress: progress,
            }),
          { signal, onQueued },
        )
    return images.map(({ bytes, seed, width, height }) => ({
      meta: { seed, width, height },
      png: bytes,
    }))
  })()
  result.catch(() => undefined) // observed by every stream; never an unhandled rejection
  return { result, listeners, settled: false, cancel: (reason) => cancel.abort(reason) }
}

/** The job's prompt embeddings: sent by the edge, or encoded here from its `input_ids`. */
async function embeddings(
  engine: LocalEngine,
  job: Job,
  stats: { promptsEncoded: number },
): Promise<PromptEmbeddings> {
  const { prompt_embeds: pe, negative_prompt_embeds: ne, input_ids: ids } = job.tensors
  if (pe) return { prompt: asFloat32(pe), negative: ne ? asFloat32(ne) : undefined }
  if (!ids) throw new ProtocolError('job has neither prompt_embeds nor input_ids')
  const pipeline = engine.pipeline(job.header.model)
  const window = pipeline.spec.tokenWindow
  const rows = job.header.guidanceScale > 1 ? 2 : 1
  if (
    ids.type !== 'int32' ||
    ids.dims.length !== 2 ||
    ids.dims[0] !== rows ||
    ids.dims[1] !== window
  )
    throw new ProtocolError(`input_ids must be int32 [${rows}, ${window}]`)
  const row = (r: number) =>
    Array.from(ids.data.subarray(r * window, (r + 1) * window) as Int32Array)
  stats.promptsEncoded += rows
  return {
    prompt: await pipeline.encodeTokenIds(row(0)),
    negative: rows === 2 ? await pipeline.encodeTokenIds(row(1)) : undefined,
  }
}

function streamRun(
  run: Run,
  abandoned: (run: Run) => void,
  sign: (images: Uint8Array[]) => Promise<string>,
): ReadableStream<Uint8Array> {
  const enc = new TextEncoder()
  let listener: ((p: object) => void) | undefined
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const push = (chunk: Uint8Array) => {
        try {
          controller.enqueue(chunk)
        } catch {
          // The client went away: `cancel` below decides whether the run goes on.
        }
      }
      listener = (p) => push(frame('P', enc.encode(JSON.stringify(p))))
      run.listeners.add(listener)
      try {
        const images = await run.result
        const payloads = images.map((img) => imagePayload(img.meta, img.png))
        for (const p of payloads) push(frame('I', p))
        push(frame('D', enc.encode(await sign(payloads))))
      } catch (e) {
        const err = e as Error
        const timedOut = err.name === 'TimeoutError' || err.name === 'AbortError'
        const status = timedOut
          ? 504
          : err instanceof EngineError
            ? err.failure.status
            : err instanceof ProtocolError
              ? 400
              : ['PipelineInputError', 'SchedulerError', 'PromptTooLongError'].includes(err.name)
                ? 422
                : 500
        const nonFinite = err.name === 'NonFiniteOutputError'
        push(
          frame(
            'E',
            enc.encode(
              JSON.stringify({
                status,
                title: timedOut ? 'Deadline exceeded' : 'Generation failed',
                detail: err.message,
                // The edge answers this one as it is: the same job would fail the same way.
                ...(nonFinite ? { type: 'generation-non-finite' } : {}),
              }),
            ),
          ),
        )
      } finally {
        run.listeners.delete(listener)
        try {
          controller.close()
        } catch {
          /* already closed by a cancelled client */
        }
      }
    },
    cancel() {
      if (listener) run.listeners.delete(listener)
      if (!run.settled && run.listeners.size === 0) abandoned(run)
    },
  })
}
