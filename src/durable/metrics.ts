/**
 * @module
 * `Metrics`: one Durable Object (`idFromName('global')`) holding the deployment's counters, so
 * `/metrics` reports totals across isolates rather than one isolate's view.
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

  /** Records one batch of observations. */
  async record(delta: MetricsDelta): Promise<void> {
    applyDelta(this.snapshot, delta)
    await this.ctx.storage.put('snapshot', this.snapshot)
  }

  /** Returns the current counters. */
  async read(): Promise<MetricsSnapshot> {
    return this.snapshot
  }
}

/** Records a delta, logging instead of failing the caller when the metrics object is down. */
export async function recordMetrics(
  ns: DurableObjectNamespace<Metrics>,
  delta: MetricsDelta,
): Promise<void> {
  try {
    await ns.get(ns.idFromName('global')).record(delta)
  } catch (e) {
    console.warn('metrics: record failed', e)
  }
}

/** Reads the counters. */
export function readMetrics(ns: DurableObjectNamespace<Metrics>): Promise<MetricsSnapshot> {
  return ns.get(ns.idFromName('global')).read()
}
