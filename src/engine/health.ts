/**
 * @module
 * Health of the GPU backends, seen from the edge, in two layers:
 * - a per-isolate circuit breaker: a backend that fails a job is skipped (open) for a backoff
 *   that doubles with each consecutive failure; when the backoff ends the circuit is half-open
 *   and one `/healthz` probe (shared by concurrent requests) decides whether it gets jobs again;
 * - a Cron Trigger (`recordBackendHealth` in `./engine`) that probes every backend and writes
 *   the results to KV, so every isolate orders backends healthy-first without probing itself.
 *
 * `/healthz` is unsigned on purpose: orchestrators and load balancers probe it without the
 * secret, and it reveals only readiness, the provider and model digests. A backend that lacks the
 * edge's model digest counts as unhealthy for that model (it would refuse the job with 409).
 */

/** What a backend's `/healthz` reports (200 when `ready`, 503 while loading or after a failed load). */
export interface BackendReadiness {
  ready: boolean
  status: 'loading' | 'ready' | 'failed'
  /** Execution provider chain in use, e.g. `onnxruntime-node:webgpu>cpu`. */
  provider?: string
  models: { id: string; digest: string }[]
  /**
   * Counters since start: jobs run (not joined or replayed), running now, prompts that came as
   * token ids (encoded here, or served from the embedding cache), and runs cancelled because
   * every client went away.
   */
  jobs: { started: number; running: number; promptsEncoded: number; cancelled: number }
  error?: string
}

/** The outcome of one probe of one backend. */
export interface HealthRecord {
  /** The backend answered 200 with `ready: true`. */
  healthy: boolean
  /** Digests of the models it serves (empty when unhealthy). */
  digests: string[]
  /** The models it serves, by id (empty when unhealthy; absent in records of older edges). */
  models?: { id: string; digest: string }[]
  provider?: string
  /** Epoch ms of the probe. */
  checkedAt: number
  /** Why it is unhealthy, or `ready`. */
  detail: string
}

/** Probes `base`/healthz once, within `timeoutMs`. Never throws. */
export async function probeBackend(
  base: string,
  doFetch: (input: string, init: RequestInit) => Promise<Response>,
  timeoutMs = 2_000,
): Promise<HealthRecord> {
  const checkedAt = Date.now()
  const down = (detail: string): HealthRecord => ({
    healthy: false,
    digests: [],
    checkedAt,
    detail,
  })
  try {
    const res = await doFetch(new URL('/healthz', base).toString(), {
      signal: AbortSignal.timeout(Math.max(1, timeoutMs)),
    })
    const body = (await res.json().catch(() => undefined)) as BackendReadiness | undefined
    if (!body || typeof body !== 'object' || !Array.isArray(body.models))
      return down(`answered ${res.status} without a readiness report`)
    if (!res.ok || body.ready !== true)
      return down(
        `not ready (${res.status} ${body.status ?? ''}${body.error ? `: ${body.error}` : ''})`,
      )
    return {
      healthy: true,
      digests: body.models.map((m) => String(m.digest)),
      models: body.models.map((m) => ({ id: String(m.id), digest: String(m.digest) })),
      provider: body.provider,
      checkedAt,
      detail: 'ready',
    }
  } catch (e) {
    return down(`unreachable: ${(e as Error).message}`)
  }
}

/** Where probe results are shared between isolates: a KV namespace (or a test's wrapper of one). */
export interface HealthStore {
  get(key: string, type: 'json'): Promise<unknown>
  put(key: string, value: string, options?: { expirationTtl?: number }): Promise<void>
}

/** The KV key holding the latest probe of every backend, by URL. */
export const HEALTH_KEY = 'gpu-backends:v1'
/** Records outlive a few missed cron runs, then vanish so a stopped cron cannot pin old verdicts. */
const HEALTH_TTL_S = 300

/** Stores the latest probes. */
export async function writeHealth(
  store: HealthStore,
  records: Readonly<Record<string, HealthRecord>>,
): Promise<void> {
  await store.put(HEALTH_KEY, JSON.stringify(records), { expirationTtl: HEALTH_TTL_S })
}

/** Reads the latest probes, or `{}` when there are none (or the store fails: health is advisory). */
export async function readHealth(store: HealthStore): Promise<Record<string, HealthRecord>> {
  try {
    const v = await store.get(HEALTH_KEY, 'json')
    return v && typeof v === 'object' ? (v as Record<string, HealthRecord>) : {}
  } catch {
    return {}
  }
}

/**
 * Orders backend URLs for a job on the model with `digest`: those the last probe found ready
 * with that model first, then unprobed ones, then the rest; config order within each group.
 * Unhealthy ones stay in the list as a last resort, since a probe may be a minute old.
 */
export function rankBackends(
  urls: readonly string[],
  shared: Readonly<Record<string, HealthRecord>>,
  digest: string,
): string[] {
  const rank = (u: string) => {
    const r = shared[u]
    if (!r) return 1
    return r.healthy && r.digests.includes(digest) ? 0 : 2
  }
  return [...urls].sort((a, b) => rank(a) - rank(b))
}

/** Options of `CircuitBreaker`. */
export interface BreakerOptions {
  /** Open time after the first failure; doubles with each consecutive failure. */
  baseMs: number
  /** Cap of the open time. */
  maxMs: number
  now?: () => number
}

interface Circuit {
  failures: number
  openUntil: number
  probe?: Promise<boolean>
}

/** A circuit breaker per backend URL (closed → open → half-open → closed or open again). */
export class CircuitBreaker {
  readonly #circuits = new Map<string, Circuit>()
  readonly #now: () => number

  /** Creates a breaker with all circuits closed. */
  constructor(readonly options: BreakerOptions) {
    this.#now = options.now ?? Date.now
  }

  /** `closed` (jobs go), `open` (skipped until the backoff ends) or `half-open` (probe first). */
  state(url: string): 'closed' | 'open' | 'half-open' {
    const c = this.#circuits.get(url)
    if (!c || c.failures === 0) return 'closed'
    return this.#now() < c.openUntil ? 'open' : 'half-open'
  }

  /**
   * Whether a job may go to `url` now. Half-open: runs `probe` once (concurrent callers share
   * it); a passing probe closes the circuit, a failing one reopens it with a longer backoff.
   */
  async admit(url: string, probe: () => Promise<boolean>): Promise<boolean> {
    const state = this.state(url)
    if (state !== 'half-open') return state === 'closed'
    const c = this.#circuits.get(url)!
    c.probe ??= probe()
      .catch(() => false)
      .then((ok) => {
        c.probe = undefined
        if (ok) c.failures = 0
        else this.failure(url)
        return ok
      })
    return c.probe
  }

  /** Records a job the backend completed: closes the circuit. */
  success(url: string): void {
    this.#circuits.delete(url)
  }

  /** Records a failure: opens the circuit for `baseMs · 2^(failures−1)`, at most `maxMs`. */
  failure(url: string): void {
    const c = this.#circuits.get(url) ?? { failures: 0, openUntil: 0 }
    c.failures++
    c.openUntil =
      this.#now() + Math.min(this.options.maxMs, this.options.baseMs * 2 ** (c.failures - 1))
    this.#circuits.set(url, c)
  }
}
