/**
 * @module
 * onnxruntime-node on a worker thread. Its session creation and runs block the calling thread,
 * so a server that ran them on its main thread went silent (health checks, progress streams)
 * for as long as a model loaded or a UNet step ran. This module presents the worker's
 * sessions as an ONNX Runtime module to `createOrtBackend`, so provider choice and serialisation
 * stay in one place; only tensors and metadata cross the thread boundary (copied: latents and
 * prompt states are small next to a model run).
 */
import { Worker } from 'node:worker_threads'
import type { InferenceSession as OrtSession, Tensor as OrtTensor } from 'onnxruntime-common'
import type { OrtModule } from './ort-backend'
import type { Tensor, TensorType } from '../pipeline/tensor'

type Reply =
  | { id: number; ok: true; [k: string]: unknown }
  | { id: number; ok: false; name: string; message: string }

/** Starts a worker thread and returns an `OrtModule` whose sessions live there. */
export function threadOrtModule(): OrtModule & { terminate(): Promise<number> } {
  const worker = new Worker(new URL('./ort-thread-worker.mjs', import.meta.url))
  // The thread holds no request of its own: it must not keep a finished process alive.
  worker.unref()
  const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>()
  let nextId = 1
  worker.on('message', (r: Reply) => {
    const p = pending.get(r.id)
    pending.delete(r.id)
    p?.resolve(r)
  })
  worker.on('error', (e) => {
    for (const p of pending.values()) p.reject(e)
    pending.clear()
  })
  const call = async (msg: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const id = nextId++
    if (pending.size === 0) worker.ref()
    const reply = await new Promise<Reply>((resolve, reject) => {
      pending.set(id, { resolve, reject })
      worker.postMessage({ ...msg, id })
    }).finally(() => {
      if (pending.size === 0) worker.unref()
    })
    if (!reply.ok) throw Object.assign(new Error(reply.message), { name: reply.name })
    return reply
  }

  /** A tensor as it crosses the thread boundary. */
  class ThreadTensor {
    constructor(
      readonly type: TensorType,
      readonly data: Tensor['data'],
      readonly dims: readonly number[],
    ) {}
  }

  return {
    Tensor: ThreadTensor as unknown as OrtModule['Tensor'],
    InferenceSession: {
      async create(model, options) {
        const created = await call({ op: 'create', model, options })
        const session = created.session as number
        const proxy = {
          inputMetadata: created.inputMetadata,
          outputMetadata: created.outputMetadata,
          async run(feeds: Record<string, OrtTensor>, outputNames?: readonly string[]) {
            const plain: Record<string, { type: string; data: unknown; dims: readonly number[] }> =
              {}
            for (const [k, t] of Object.entries(feeds))
              plain[k] = { type: t.type, data: t.data, dims: t.dims }
            const out = await call({ op: 'run', session, feeds: plain, outputNames })
            return out.outputs
          },
          release: async () => void (await call({ op: 'release', session })),
        }
        return proxy as unknown as OrtSession
      },
    },
    terminate: () => worker.terminate(),
  }
}
