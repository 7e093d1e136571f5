/**
 * @module
 * Renders the `Metrics` snapshot in the Prometheus text exposition format (version 0.0.4).
 */
import { LATENCY_BUCKETS, type MetricsSnapshot } from '../durable/metrics'

/** Content type of the Prometheus text format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

const label = (v: string | number) =>
  `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`

/** The exposition text of a snapshot. */
export function renderPrometheus(s: MetricsSnapshot): string {
  const lines: string[] = []
  const metric = (name: string, type: string, help: string, samples: string[]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples)
  }
  metric(
    'tti_requests_total',
    'counter',
    'HTTP requests by method, route and status.',
    Object.entries(s.requests).map(([k, v]) => {
      const [method, route, status] = k.split(' ')
      return `tti_requests_total{method=${label(method)},route=${label(route)},status=${label(status)}} ${v}`
    }),
  )
  metric('tti_cache_hits_total', 'counter', 'Image requests served from stored images.', [
    `tti_cache_hits_total ${s.cacheHits}`,
  ])
  metric('tti_cache_misses_total', 'counter', 'Image requests that needed a generation.', [
    `tti_cache_misses_total ${s.cacheMisses}`,
  ])
  metric(
    'tti_generations_started_total',
    'counter',
    'Generations started (single-flight leaders).',
    [`tti_generations_started_total ${s.generationsStarted}`],
  )
  metric('tti_generations_failed_total', 'counter', 'Generations that failed.', [
    `tti_generations_failed_total ${s.generationsFailed}`,
  ])
  let cumulative = 0
  const buckets = LATENCY_BUCKETS.map((le, i) => {
    cumulative += s.latencyCounts[i]
    return `tti_generation_duration_seconds_bucket{le="${le}"} ${cumulative}`
  })
  buckets.push(`tti_generation_duration_seconds_bucket{le="+Inf"} ${s.latencyCount}`)
  metric('tti_generation_duration_seconds', 'histogram', 'Duration of successful generations.', [
    ...buckets,
    `tti_generation_duration_seconds_sum ${s.latencySum}`,
    `tti_generation_duration_seconds_count ${s.latencyCount}`,
  ])
  return lines.join('\n') + '\n'
}
