/**
 * Small pure pieces: Accept negotiation, ETag matching, scheduler canonicalization, the
 * Prometheus rendering.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { canonicalScheduler } from '../../src/cache/cache-key'
import { matchesEtag } from '../../src/cache/serve-image'
import {
  applyDelta,
  flushMetrics,
  FLUSH_INTERVAL_MS,
  LATENCY_BUCKETS,
  readMetrics,
  recordMetrics,
  type MetricsSnapshot,
} from '../../src/durable/metrics'
import { negotiateImageType } from '../../src/images/negotiate'
import { renderPrometheus } from '../../src/metrics/prometheus'
import { ProblemError } from '../../src/problem'

describe('negotiateImageType', () => {
  it.each([
    [undefined, 'image/png'],
    ['*/*', 'image/png'],
    ['image/*', 'image/png'],
    ['application/json', 'application/json'],
    ['image/png;q=0.5, application/json', 'application/json'],
    ['application/json;q=0.9, */*;q=0.1', 'application/json'],
    ['text/html, */*;q=0.8', 'image/png'],
  ])('%s → %s', (accept, expected) => {
    expect(negotiateImageType(accept)).toBe(expected)
  })

  it('throws 406 when nothing acceptable remains', () => {
    expect(() => negotiateImageType('text/html')).toThrow(ProblemError)
    expect(() => negotiateImageType('image/png;q=0, application/json;q=0')).toThrow(ProblemError)
  })
})

describe('matchesEtag', () => {
  const sha = 'ab'.repeat(32)
  it('matches the strong, weak and wildcard forms in a list', () => {
    expect(matchesEtag(`"${sha}"`, sha)).toBe(true)
    expect(matchesEtag(`"x", W/"${sha}"`, sha)).toBe(true)
    expect(matchesEtag('*', sha)).toBe(true)
    expect(matchesEtag('"other"', sha)).toBe(false)
    expect(matchesEtag(undefined, sha)).toBe(false)
  })
})

describe('canonicalScheduler', () => {
  it('keys aliases by the class and overrides they build', () => {
    expect(canonicalScheduler('euler')).toEqual(canonicalScheduler('EulerDiscreteScheduler'))
    expect(canonicalScheduler('EULER_A')).toEqual(canonicalScheduler('euler_a'))
    expect(canonicalScheduler('pndm')).toEqual(canonicalScheduler('plms'))
    expect(canonicalScheduler('pndm')).not.toEqual(canonicalScheduler('PNDMScheduler'))
    expect(canonicalScheduler('dpmpp_2m')).not.toEqual(canonicalScheduler('dpmpp_2m_karras'))
  })
})

describe('renderPrometheus', () => {
  it('renders cumulative histogram buckets and labelled counters', () => {
    const s: MetricsSnapshot = {
      requests: {},
      cacheHits: 0,
      cacheMisses: 0,
      generationsStarted: 0,
      generationsFailed: 0,
      latencyCounts: new Array(LATENCY_BUCKETS.length + 1).fill(0),
      latencySum: 0,
      latencyCount: 0,
    }
    applyDelta(s, { request: { method: 'GET', route: '/healthz', status: 200 }, cache: 'HIT' })
    applyDelta(s, { generationSeconds: 0.3 })
    applyDelta(s, { generationSeconds: 500 })
    const text = renderPrometheus(s)
    expect(text).toContain('tti_requests_total{method="GET",route="/healthz",status="200"} 1')
    expect(text).toContain('tti_cache_hits_total 1')
    expect(text).toContain('tti_generation_duration_seconds_bucket{le="0.25"} 0')
    expect(text).toContain('tti_generation_duration_seconds_bucket{le="0.5"} 1')
    expect(text).toContain('tti_generation_duration_seconds_bucket{le="120"} 1')
    expect(text).toContain('tti_generation_duration_seconds_bucket{le="+Inf"} 2')
    expect(text).toContain('tti_generation_duration_seconds_count 2')
  })
})

describe('metrics buffering (no singleton on the request path)', () => {
  it('sends one write per flush interval however many requests, and the sum is exact', async () => {
    const before = await readMetrics(env.METRICS)
    let writes = 0
    // Counts the calls to the real namespace's object (the counting wrapper is the only fake).
    const counted = {
      idFromName: (n: string) => env.METRICS.idFromName(n),
      get: (id: DurableObjectId) => {
        const stub = env.METRICS.get(id)
        return {
          merge: (s: Parameters<typeof stub.merge>[0]) => {
            writes++
            return stub.merge(s)
          },
          read: () => stub.read(),
        }
      },
    } as unknown as typeof env.METRICS
    const t0 = Date.now() + 10 * FLUSH_INTERVAL_MS
    await recordMetrics(counted, { cache: 'HIT' }, t0) // due: the first send of the interval
    for (let i = 1; i < 100; i++) await recordMetrics(counted, { cache: 'HIT' }, t0 + i)
    expect(writes).toBe(1)
    await recordMetrics(counted, { cache: 'HIT' }, t0 + FLUSH_INTERVAL_MS)
    expect(writes).toBe(2)
    await flushMetrics(counted)
    const after = await readMetrics(env.METRICS)
    expect(after.cacheHits - before.cacheHits).toBe(101)
  })
})
