import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { defineConfig } from 'vitest/config'

/** The golden reference data (../shared/golden), read in place and served to workerd. */
const GOLDEN = fileURLToPath(new URL('../shared/golden/', import.meta.url))

// Workers tests: the real app, Durable Objects, KV and R2 inside workerd (miniflare), with the
// real engine over the bundled model.
export default defineConfig({
  plugins: [
    cloudflareTest({
      main: './src/index.ts',
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: {
          ADMIN_TOKEN: 'test-admin-token',
          // Webhooks go to a receiver on loopback; jobs and deliveries retry after a second.
          WEBHOOK_PRIVATE_TARGETS: 'allow',
          JOB_RETRY_BASE_SECONDS: '1',
          WEBHOOK_RETRY_BASE_SECONDS: '1',
          // The fuzz run's size and seed (test/workers/openapi.test.ts); empty: its defaults.
          FUZZ_REQUESTS: process.env.FUZZ_REQUESTS ?? '',
          FUZZ_SEED: process.env.FUZZ_SEED ?? '',
        },
        // GET http://golden/<path> answers ../shared/golden/<path> (404 if absent), so golden
        // pipeline tests run the tiny reference models inside workerd.
        serviceBindings: {
          GOLDEN: async (request: Request) => {
            const path = decodeURIComponent(new URL(request.url).pathname).replace(/^\/+/, '')
            if (path.split('/').includes('..')) return new Response('bad path', { status: 400 })
            try {
              return new Response(await readFile(GOLDEN + path))
            } catch {
              return new Response('not found', { status: 404 })
            }
          },
        },
      },
    }),
  ],
  test: {
    include: ['test/workers/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two shared cores: one workerd, test files one after another, sharing one module graph so
    // the ORT WebAssembly and the model load once (tests use distinct seeds and metric deltas).
    fileParallelism: false,
    isolate: false,
  },
})
