/**
 * Small pure pieces: Accept negotiation, ETag matching, scheduler canonicalization, the
 * Prometheus rendering.
 */
import { describe, expect, it } from 'vitest'
import { canonicalScheduler } from '../../src/cache/cache-key'
import { matchesEtag } from '../../src/cache/serve-image'
import { applyDelta, LATENCY_BUCKETS, type MetricsSnapshot } from '../../src/durable/metrics'
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
