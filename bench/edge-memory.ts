/**
 * Benchmark (not a test): the worker isolate's memory while it generates with the bundled model
 * in the edge (onnxruntime-web on WebAssembly), read through the inspector protocol that
 * `wrangler dev` exposes, and whether anything grows over many requests.
 *
 *   npm run bench:memory                       # 3 rounds of 40 misses + 400 hits
 *   npm run bench:memory -- --rounds 5 --misses 60 --hits 1000
 *
 * What it reads: `Runtime.getHeapUsage` of the worker's isolate, sampled every 50 ms:
 * `usedSize` (the JS heap) and `backingStorageSize` (ArrayBuffer backing stores, which include
 * the WebAssembly memory of ORT and of the image codecs); their sum is what the Workers
 * 128 MB limit counts. After each round it forces a garbage collection
 * (`HeapProfiler.collectGarbage`) and reads the heap again: a leak shows as growth of that
 * after-GC figure from round to round, while the peak shows what one generation needs. The
 * workerd process's RSS (every isolate plus the runtime, from /proc) is printed beside it.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { freePort, startWorker } from '../test/node/worker-server'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    misses: { type: 'string', default: '40' },
    hits: { type: 'string', default: '400' },
  },
})
const ROUNDS = Number(values.rounds)
const MISSES = Number(values.misses)
const HITS = Number(values.hits)
const MB = 1024 * 1024

/** A minimal Chrome DevTools Protocol client over one WebSocket. */
async function inspector(url: string) {
  // wrangler's inspector proxy admits local DevTools origins only.
  const ws = new WebSocket(url, { headers: { origin: 'http://localhost' } })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  let next = 1
  const pending = new Map<number, (r: { result?: unknown; error?: unknown }) => void>()
  const contexts: number[] = []
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data)) as {
      id?: number
      method?: string
      params?: { context?: { id: number }; executionContextId?: number }
      result?: unknown
      error?: unknown
    }
    // Live contexts only: workerd makes one per request and destroys it after.
    if (msg.method === 'Runtime.executionContextCreated') contexts.push(msg.params!.context!.id)
    if (msg.method === 'Runtime.executionContextDestroyed') {
      const i = contexts.indexOf(msg.params!.executionContextId!)
      if (i >= 0) contexts.splice(i, 1)
    }
    if (msg.id !== undefined) pending.get(msg.id)?.(msg)
  })
  const send = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = next++
      pending.set(id, (m) => {
        pending.delete(id)
        if (m.error) reject(new Error(`${method}: ${JSON.stringify(m.error)}`))
        else resolve(m.result as T)
      })
      ws.send(JSON.stringify({ id, method, params }))
    })
  /** The newest execution context (workerd makes one per request; any sees the whole heap). */
  const context = () => contexts.at(-1)
  return { send, context, close: () => ws.close() }
}

interface HeapUsage {
  usedSize: number
  totalSize: number
  backingStorageSize?: number
}

/** RSS of every workerd process (the local runtime), in bytes. */
function workerdRss(): number {
  let total = 0
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('workerd')) continue
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m) total += Number(m[1]) * 1024
    } catch {
      /* gone */
    }
  }
  return total
}

async function main() {
  const inspectorPort = await freePort()
  // Room for every request of the run on one key.
  const worker = await startWorker({ RATE_LIMIT_BURST: '100000' }, { inspectorPort })
  const base = worker.url
  const targets = (await fetch(`http://127.0.0.1:${inspectorPort}/json`).then((r) => r.json())) as {
    webSocketDebuggerUrl: string
    title?: string
  }[]
  if (!targets.length) throw new Error('the inspector lists no worker')
  const cdp = await inspector(targets[0].webSocketDebuggerUrl)
  await cdp.send('Runtime.enable')
  const heap = async () => {
    const h = await cdp.send<HeapUsage>('Runtime.getHeapUsage')
    return { js: h.usedSize, backing: h.backingStorageSize ?? 0 }
  }
  /** Runs `fn` while poking the isolate with /healthz: workerd serves some inspector calls only
   * when the isolate next wakes. */
  const awake = async <T>(fn: () => Promise<T>): Promise<T> => {
    let done = false
    const p = fn().finally(() => (done = true))
    while (!done) {
      await fetch(`${base}/healthz`).then(
        (r) => r.arrayBuffer(),
        () => undefined,
      )
      await Promise.race([p, new Promise((r) => setTimeout(r, 100))])
    }
    return p
  }
  /** Bytes of every live WebAssembly.Memory (ORT's, the codecs'): never shrinks, so its value
   * after a round is that round's peak. Found with `Runtime.queryObjects` on its prototype. */
  const wasmNow = async () => {
    const proto = await cdp.send<{ result: { objectId: string } }>('Runtime.evaluate', {
      expression: 'WebAssembly.Memory.prototype',
      contextId: cdp.context(),
    })
    const found = await cdp.send<{ objects: { objectId: string } }>('Runtime.queryObjects', {
      prototypeObjectId: proto.result.objectId,
    })
    const sum = await cdp.send<{ result: { value: number } }>('Runtime.callFunctionOn', {
      objectId: found.objects.objectId,
      functionDeclaration:
        'function () { return this.reduce((a, m) => a + m.buffer.byteLength, 0) }',
      returnByValue: true,
    })
    return sum.result.value
  }
  const wasmBytes = () => awake(wasmNow)
  const afterGc = async () => {
    await awake(() => cdp.send('HeapProfiler.collectGarbage'))
    return heap()
  }

  const { key } = await worker.createKey({ name: 'bench-memory' })
  const generate = async (seed: number) => {
    const res = await fetch(`${base}/v1/images`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'image/png',
      },
      body: JSON.stringify({ prompt: 'a small blue triangle at the top left', seed }),
    })
    if (!res.ok) throw new Error(`POST /v1/images: ${res.status} ${await res.text()}`)
    return res
  }

  // The isolate's total at its largest sample: JS heap, backing stores, WebAssembly memory.
  let peak = { js: 0, backing: 0, wasm: 0, sum: 0 }
  let sampling = true
  let samples = 0
  let jsPeak = 0
  let wasm: number | undefined
  const sampler = (async () => {
    while (sampling) {
      // `queryObjects` walks the whole heap (a full GC): the WebAssembly figure is re-read every
      // 20th sample only; between reads it can only have grown, so this reads low, never high.
      if (samples++ % 20 === 0) wasm = (await wasmNow().catch(() => undefined)) ?? wasm
      const h = await heap().catch(() => undefined)
      if (h && h.js + h.backing > jsPeak) jsPeak = h.js + h.backing
      if (h && wasm !== undefined && h.js + h.backing + wasm > peak.sum)
        peak = { ...h, wasm, sum: h.js + h.backing + wasm }
      await new Promise((r) => setTimeout(r, 50))
    }
  })()

  const mb = (b: number) => (b / MB).toFixed(1)
  const idle = await afterGc()
  const idleWasm = await wasmBytes()
  console.log(`# Edge isolate memory: bundled model, ${MISSES} misses + ${HITS} hits per round`)
  console.log()
  console.log(
    `Before any generation (after GC): JS heap ${mb(idle.js)} MB, backing stores ${mb(idle.backing)} MB, ` +
      `WebAssembly memory ${mb(idleWasm)} MB; workerd RSS (all its processes) ${mb(workerdRss())} MB.`,
  )
  console.log()
  console.log(
    '| round | peak isolate total (MB) | at the peak: JS heap / backing stores / WebAssembly (MB) | WebAssembly at the end (MB) | bound: peak JS + backing, plus WebAssembly at the end (MB) | after GC: JS heap + backing (MB) | workerd RSS (MB) |',
  )
  console.log('|---:|---:|---:|---:|---:|---:|---:|')
  let seed = 1_000_000
  for (let round = 1; round <= ROUNDS; round++) {
    peak = { js: 0, backing: 0, wasm: 0, sum: 0 }
    jsPeak = 0
    const seeds: number[] = []
    for (let i = 0; i < MISSES; i++) {
      seeds.push(++seed)
      await (await generate(seed)).arrayBuffer()
    }
    for (let i = 0; i < HITS; i++) await (await generate(seeds[i % seeds.length])).arrayBuffer()
    const wasm = await wasmBytes()
    const after = await afterGc()
    console.log(
      `| ${round} | ${mb(peak.sum)} | ${mb(peak.js)} / ${mb(peak.backing)} / ${mb(peak.wasm)} | ${mb(wasm)} | ${mb(jsPeak + wasm)} | ${mb(after.js + after.backing)} | ${mb(workerdRss())} |`,
    )
  }
  sampling = false
  await sampler
  cdp.close()
  await worker.stop()
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
