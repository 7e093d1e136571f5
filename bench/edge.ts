/**
 * Benchmark (not a test): what a cache hit costs at the edge, as ratios to a bare worker, and
 * how the API behaves under a burst of generations.
 *
 *   npm run bench:edge                      # 3 interleaved rounds of 5 s per path, 20 connections
 *   npm run bench:edge -- --rounds 5 --seconds 10 --connections 20 --burst 100
 *
 * It starts the API (`wrangler dev`, the bundled model, local KV/R2/Durable Objects) and the
 * hello-world Hono worker of `bench/hello-worker` (a 4.7 KB body) on the same runtime, and
 * drives both with autocannon, alternating the baseline and each path within every round so
 * both see the same machine. Paths: the permanent URL `GET /v1/images/{sha256}.png`, an embed
 * view `GET /v1/embeds/{token}.png` (a hit), and an authenticated `POST /v1/images` that hits
 * the cache. A ratio is the path's requests per second over the hello-world's in the same
 * round; the table gives each round's ratios and their median.
 *
 * Then the burst: `--burst` distinct misses at once, while a prober sends a hit, a permanent-URL
 * GET and a `/healthz` every 100 ms; it prints p50/p99 of the generations and of each probe.
 */
import autocannon from 'autocannon'
import { cpus } from 'node:os'
import { parseArgs } from 'node:util'
import { startWorker } from '../test/node/worker-server'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '20' },
    burst: { type: 'string', default: '100' },
  },
})
const ROUNDS = Number(values.rounds)
const SECONDS = Number(values.seconds)
const CONNECTIONS = Number(values.connections)
const BURST = Number(values.burst)

interface Target {
  name: string
  url: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
}

/** Requests per second of one autocannon run; throws if any answer was not 2xx. */
async function rps(t: Target): Promise<number> {
  const r = await autocannon({
    url: t.url,
    method: t.method ?? 'GET',
    headers: t.headers,
    body: t.body,
    connections: CONNECTIONS,
    duration: SECONDS,
  })
  if (r.non2xx || r.errors || r.timeouts)
    throw new Error(`${t.name}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`)
  return r.requests.total / SECONDS
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]
}

async function main() {
  // One after the other: wrangler's bundler (esbuild) fails on two builds at once in a process.
  const worker = await startWorker({ RATE_LIMIT_BURST: '1000000' })
  const helloWorker = await startWorker({}, { config: 'bench/hello-worker/wrangler.toml' })
  const api = worker.url
  const hello = helloWorker.url
  const { key } = await worker.createKey({ name: 'bench-edge' })
  const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
  const hitBody = JSON.stringify({ prompt: 'a large red circle on a white background', seed: 3 })
  const made = (await fetch(`${api}/v1/images`, {
    method: 'POST',
    headers: { ...auth, accept: 'application/json' },
    body: hitBody,
  }).then((r) => r.json())) as { images: { sha256: string }[] }
  const sha = made.images[0].sha256
  const embed = (await fetch(`${api}/v1/embeds`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ prompt: 'a small blue square at the top left', seed: 5 }),
  }).then((r) => r.json())) as { url: string }
  const embedPath = new URL(embed.url).pathname
  // The first view generates; every view after it is a hit.
  const first = await fetch(api + embedPath)
  if (!first.ok) throw new Error(`embed view: ${first.status} ${await first.text()}`)
  await first.arrayBuffer()

  const targets: Target[] = [
    { name: 'GET /v1/images/{sha256}.png (permanent URL)', url: `${api}/v1/images/${sha}.png` },
    { name: 'GET /v1/embeds/{token}.png (embed view, a hit)', url: api + embedPath },
    {
      name: 'POST /v1/images (authenticated cache hit)',
      url: `${api}/v1/images`,
      method: 'POST',
      headers: { ...auth, accept: 'image/png' },
      body: hitBody,
    },
  ]
  const baseline: Target = { name: 'hello-world Hono worker', url: `${hello}/` }
  const ratios = targets.map(() => [] as number[])
  const helloRps: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, t] of targets.entries()) {
      const h = await rps(baseline)
      const r = await rps(t)
      helloRps.push(h)
      ratios[i].push(r / h)
    }
  }
  console.log(
    `# npm run bench:edge: ${ROUNDS} rounds x ${SECONDS} s per path, ${CONNECTIONS} connections, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'})`,
  )
  console.log()
  console.log(`hello-world: median ${median(helloRps).toFixed(0)} requests/s`)
  console.log()
  console.log('| path | rps / hello-world, median | each round |')
  console.log('|---|---:|---|')
  for (const [i, t] of targets.entries())
    console.log(
      `| ${t.name} | ${median(ratios[i]).toFixed(2)} | ${ratios[i].map((x) => x.toFixed(2)).join(', ')} |`,
    )

  // The burst: distinct misses at once, and probes of what must stay fast meanwhile.
  const probes: Record<string, number[]> = { hit: [], 'permanent URL': [], '/healthz': [] }
  const timed = async (f: () => Promise<Response>) => {
    const t0 = performance.now()
    const res = await f()
    await res.arrayBuffer()
    if (!res.ok) throw new Error(`${res.url}: ${res.status}`)
    return performance.now() - t0
  }
  let bursting = true
  const prober = (async () => {
    while (bursting) {
      const [a, b, c] = await Promise.all([
        timed(() =>
          fetch(`${api}/v1/images`, {
            method: 'POST',
            headers: { ...auth, accept: 'image/png' },
            body: hitBody,
          }),
        ),
        timed(() => fetch(`${api}/v1/images/${sha}.png`)),
        timed(() => fetch(`${api}/healthz`)),
      ])
      probes.hit.push(a)
      probes['permanent URL'].push(b)
      probes['/healthz'].push(c)
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
  const t0 = performance.now()
  let refused = 0
  const misses = await Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      timed(() =>
        fetch(`${api}/v1/images`, {
          method: 'POST',
          headers: { ...auth, accept: 'image/png' },
          body: JSON.stringify({ prompt: 'a green triangle', seed: 900_000 + i }),
        }),
      ).catch(() => {
        refused++ // a full queue's 503 (engine-overloaded)
        return undefined
      }),
    ),
  ).then((xs) => xs.filter((x): x is number => x !== undefined))
  const wall = performance.now() - t0
  bursting = false
  await prober
  console.log()
  console.log(
    `Burst: ${BURST} distinct misses at once, ${(wall / 1000).toFixed(1)} s in all, ${refused} refused (503)`,
  )
  console.log()
  console.log('| requests | n | p50 (ms) | p99 (ms) | p50 / p99 |')
  console.log('|---|---:|---:|---:|---:|')
  const row = (name: string, xs: number[]) =>
    console.log(
      `| ${name} | ${xs.length} | ${quantile(xs, 0.5).toFixed(0)} | ${quantile(xs, 0.99).toFixed(0)} | ${(quantile(xs, 0.5) / quantile(xs, 0.99)).toFixed(2)} |`,
    )
  row('generations (the burst)', misses)
  for (const [name, xs] of Object.entries(probes)) row(`${name} during the burst`, xs)
  await Promise.all([worker.stop(), helloWorker.stop()])
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
