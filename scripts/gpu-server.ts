/**
 * The GPU backend service (`npm run gpu`): loads the models once on onnxruntime-node and runs
 * denoise jobs from the edge. It listens at once: `/healthz` answers 503 (`loading`) until the
 * models are loaded, then 200 with the provider chain and model digests.
 *
 *   TTI_BACKEND_SECRET=... TTI_PROVIDERS=webgpu,cpu npm run gpu -- --port 8788 --model models/tiny-shapes
 *   TTI_PROVIDERS=wasm  # the edge's WebAssembly kernels: the same bytes as the in-edge path
 *   --concurrency 1 --queue 32  # runs at once, and jobs waiting beyond them (more: 503)
 *   --batch 8 [--batch-window 5]  # up to 8 compatible jobs share each UNet call (off by default:
 *                                 # results may differ from unbatched ones in the last bits)
 */
import { serve } from '@hono/node-server'
import { parseArgs } from 'node:util'
import { checkBatchOptions } from '../src/backend/batcher'
import { createBackendApp } from '../src/backend/service'
import { BACKEND_QUEUE, GenerationQueue } from '../src/engine/queue'
import { createNodeBackend } from '../src/gpu/ort-node'
import { folderSource } from '../src/node/folder-source'
import { loadModel } from '../src/pipeline/model'
import { StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'

/** Idle keep-alive time of the backend's connections (longer than common client pools). */
const KEEP_ALIVE_MS = 65_000

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: process.env.PORT ?? '8788' },
      host: { type: 'string', default: '127.0.0.1' },
      model: { type: 'string', multiple: true },
      providers: { type: 'string', default: process.env.TTI_PROVIDERS },
      concurrency: { type: 'string', default: String(BACKEND_QUEUE.concurrency) },
      queue: { type: 'string', default: String(BACKEND_QUEUE.maxWaiting) },
      batch: { type: 'string' },
      'batch-window': { type: 'string', default: '0' },
    },
  })
  const queue = { concurrency: Number(values.concurrency), maxWaiting: Number(values.queue) }
  const batch = values.batch
    ? { maxJobs: Number(values.batch), windowMs: Number(values['batch-window']) }
    : undefined
  // Checked before anything loads: a bad number is a plain message and a non-zero exit.
  new GenerationQueue(queue)
  if (batch) checkBatchOptions(batch)
  const secret = process.env.TTI_BACKEND_SECRET
  if (!secret)
    throw new Error(
      'set TTI_BACKEND_SECRET (the same value as the worker secret GPU_BACKEND_SECRET)',
    )
  const dirs = values.model?.length ? values.model : ['models/tiny-shapes']
  // Sessions load and run on a worker thread, so /healthz and progress stay live meanwhile.
  const backend = createNodeBackend(values.providers, { thread: true })
  const models = (async () => {
    const loaded: StableDiffusionPipeline[] = []
    for (const dir of dirs) {
      loaded.push(new StableDiffusionPipeline(await loadModel(folderSource(dir), backend)))
    }
    return loaded
  })()
  const app = createBackendApp({ models, secret, provider: backend.name, queue, batch })
  const port = Number(values.port)
  const server = serve({ fetch: app.fetch, port, hostname: values.host }, () => {
    const batching = batch ? `batches of up to ${batch.maxJobs}` : 'no batching'
    console.log(
      `gpu backend on http://${values.host}:${port} (${backend.name}, ${batching}; loading)`,
    )
  })
  // Node closes idle keep-alive connections after 5 s; a client that reuses one just then (the
  // edge, after a health probe) sees "connection lost". Outlive the clients' idle pools instead.
  if ('keepAliveTimeout' in server) {
    server.keepAliveTimeout = KEEP_ALIVE_MS
    server.headersTimeout = KEEP_ALIVE_MS + 1_000
  }
  const loaded = await models
  console.log(`gpu backend ready: ${loaded.map((m) => m.spec.id).join(', ')}`)
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`)
  process.exit(2)
})
