/**
 * @module
 * `Metrics`: one Durable Object (`idFromName('global')`) holding the deployment's counters, so
 * `/metrics` reports totals across isolates rather than one isolate's view. Requests never wait
 * on it, and it is no singleton on the request path: each isolate adds observations to its own
 * buffer and sends the sum at most every `FLUSH_INTERVAL_MS` (and before a read), so the object
 * sees one write per isolate per interval however many requests there are.
 */
import { DurableObject } from 'cloudflare:workers'

/** Upper bounds (seconds) of the generation latency histogram buckets. */
export const LATENCY_BUCKETS = Object.freeze([0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120])

/** One batch of observations. */
export interface MetricsDelta {
  request?: { method: string; route: string; status: number }
  cache?: 'HIT' | 'MISS'
  generationsStarted?: number
  generationsFailed?: number
  /** Duration of one finished generation, in seconds. */
  generationSeconds?: number
}

/** All counters; `requests` is keyed by `method route status`. */
export interface MetricsSnapshot {
  requests: Record<string, number>
  cacheHits: number
  cacheMisses: number
  generationsStarted: number
  generationsFailed: number
  /** Non-cumulative counts per bucket of `LATENCY_BUCKETS`, then one for +Inf. */
  latencyCounts: number[]
  latencySum: number
  latencyCount: number
}

function empty(): MetricsSnapshot {
  return {
    requests: {},
    cacheHits: 0,
    cacheMisses: 0,
    generationsStarted: 0,
    generationsFailed: 0,
    latencyCounts: new Array(LATENCY_BUCKETS.length + 1).fill(0),
    latencySum: 0,
    latencyCount: 0,
  }
}

/** How often an isolate sends its buffered counts, at most. */
export const FLUSH_INTERVAL_MS = 5000

/** Adds snapshot `b` into `a` in place. */
export function mergeSnapshot(a: MetricsSnapshot, b: MetricsSnapshot): void {
  for (const [k, v] of Object.entries(b.requests)) a.requests[k] = (a.requests[k] ?? 0) + v
  a.cacheHits += b.cacheHits
  a.cacheMisses += b.cacheMisses
  a.generationsStarted += b.generationsStarted
  a.generationsFailed += b.generationsFailed
  b.latencyCounts.forEach((v, i) => (a.latencyCounts[i] += v))
  a.latencySum += b.latencySum
  a.latencyCount += b.latencyCount
}

/** Applies a delta to a snapshot in place. */
export function applyDelta(s: MetricsSnapshot, d: MetricsDelta): void {
  if (d.request) {
    const k = `${d.request.method} ${d.request.route} ${d.request.status}`
    s.requests[k] = (s.requests[k] ?? 0) + 1
  }
  if (d.cache === 'HIT') s.cacheHits++
  if (d.cache === 'MISS') s.cacheMisses++
  s.generationsStarted += d.generationsStarted ?? 0
  s.generationsFailed += d.generationsFailed ?? 0
  if (d.generationSeconds !== undefined) {
    const i = LATENCY_BUCKETS.findIndex((le) => d.generationSeconds! <= le)
    s.latencyCounts[i === -1 ? LATENCY_BUCKETS.length : i]++
    s.latencySum += d.generationSeconds
    s.latencyCount++
  }
}

/** The deployment-wide counters. */
export class Metrics extends DurableObject<Env> {
  private snapshot: MetricsSnapshot = empty()

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    ctx.blockConcurrencyWhile(async () => {
      this.snapshot = (await ctx.storage.get<MetricsSnapshot>('snapshot')) ?? empty()
    })
  }

  /** Adds an isolate's buffered counts. */
  async merge(counts: MetricsSnapshot): Promise<void> {
    mergeSnapshot(this.snapshot, counts)
    await this.ctx.storage.put('snapshot', this.snapshot)
  }

  /** Returns the current counters. */
  async read(): Promise<MetricsSnapshot> {
    return this.snapshot
  }
}

/** This isolate's counts not yet sent, and when it last sent. */
let buffered: MetricsSnapshot | undefined
let lastFlush = 0

/**
 * Records a delta in this isolate's buffer; sends the buffer when the last send is at least
 * `FLUSH_INTERVAL_MS` old. Never fails its caller: a failed send is logged and kept for the next.
 */
export function recordMetrics(
  ns: DurableObjectNamespace<Metrics>,
  delta: MetricsDelta,
  now = Date.now(),
): Promise<void> {
  buffered ??= empty()
  applyDelta(buffered, delta)
  return now - lastFlush >= FLUSH_INTERVAL_MS ? flushMetrics(ns, now) : Promise.resolve()
}

/** Sends this isolate's buffered counts now (when there are any). */
export async function flushMetrics(
  ns: DurableObjectNamespace<Metrics>,
  now = Date.now(),
): Promise<void> {
  const batch = buffered
  if (!batch) return
  buffered = undefined
  lastFlush = now
  try {
    await ns.get(ns.idFromName('global')).merge(batch)
  } catch (e) {
    console.warn('metrics: flush failed; keeping the counts for the next one', e)
    if (buffered) mergeSnapshot(batch, buffered)
    buffered = batch
  }
}

/** Reads the counters, this isolate's buffer included. */
export async function readMetrics(ns: DurableObjectNamespace<Metrics>): Promise<MetricsSnapshot> {
  await flushMetrics(ns)
  return ns.get(ns.idFromName('global')).read()
}
