// @ts-check
/**
 * @module
 * The worker thread behind `./ort-thread`: holds onnxruntime-node sessions and runs them, so the
 * thread that serves HTTP never blocks on session creation or a model run. Plain JavaScript (a
 * worker file is not transpiled). Messages: `{ id, op: 'create', model, options }`,
 * `{ id, op: 'run', session, feeds, outputNames }`, `{ id, op: 'release', session }`; each is
 * answered `{ id, ok: true, … }` or `{ id, ok: false, name, message }`.
 */
import { parentPort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'

if (!parentPort) throw new Error('ort-thread-worker.mjs runs as a worker thread')
const port = parentPort

/** @type {Map<number, import('onnxruntime-node').InferenceSession>} */
const sessions = new Map()
let nextSession = 1

/** @param {readonly import('onnxruntime-node').InferenceSession.ValueMetadata[]} list */
const metadata = (list) =>
  list.map((v) =>
    v.isTensor
      ? { name: v.name, isTensor: true, type: v.type, shape: v.shape }
      : { name: v.name, isTensor: false },
  )

port.on('message', async (msg) => {
  try {
    if (msg.op === 'create') {
      const session = await ort.InferenceSession.create(msg.model, msg.options)
      const id = nextSession++
      sessions.set(id, session)
      port.postMessage({
        id: msg.id,
        ok: true,
        session: id,
        inputMetadata: metadata(session.inputMetadata),
        outputMetadata: metadata(session.outputMetadata),
      })
    } else if (msg.op === 'run') {
      const session = sessions.get(msg.session)
      if (!session) throw new Error(`no session ${msg.session}`)
      /** @type {Record<string, import('onnxruntime-node').Tensor>} */
      const feeds = {}
      for (const [name, t] of Object.entries(msg.feeds))
        feeds[name] = new ort.Tensor(t.type, t.data, t.dims)
      const out = msg.outputNames
        ? await session.run(feeds, msg.outputNames)
        : await session.run(feeds)
      /** @type {Record<string, { type: string, data: unknown, dims: readonly number[] }>} */
      const result = {}
      for (const [name, t] of Object.entries(out))
        result[name] = { type: t.type, data: t.data, dims: t.dims }
      port.postMessage({ id: msg.id, ok: true, outputs: result })
    } else if (msg.op === 'release') {
      await sessions.get(msg.session)?.release()
      sessions.delete(msg.session)
      port.postMessage({ id: msg.id, ok: true })
    } else throw new Error(`unknown op ${msg.op}`)
  } catch (e) {
    const err = /** @type {Error} */ (e)
    port.postMessage({ id: msg.id, ok: false, name: err.name, message: err.message })
  }
})
