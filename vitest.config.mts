import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { defineConfig } from 'vitest/config'

// Workers tests: the real app, Durable Objects, KV and R2 inside workerd (miniflare), with the
// real engine over the bundled model.
export default defineConfig({
  plugins: [
    cloudflareTest({
      main: './src/index.ts',
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: { ADMIN_TOKEN: 'test-admin-token' },
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
