import { readFileSync } from 'node:fs'
import path from 'node:path'
import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { defineConfig, type Plugin } from 'vitest/config'

const root = path.dirname(new URL(import.meta.url).pathname)

/**
 * vitest-pool-workers 0.15 applies wrangler's module rules (Text, Data) by joining the Vite id
 * to the project root, which breaks for files outside it (`/@fs/...`, e.g. a model read from
 * ../shared). Such imports are turned into plain JS modules here; files inside the root still go
 * through the pool's rules, exactly like `wrangler dev`.
 */
function modulesOutsideRoot(): Plugin {
  const suffix = '?outside-root'
  return {
    name: 'modules-outside-root',
    enforce: 'pre',
    resolveId(source, importer) {
      if (!importer || !/\.(txt|onnx)$/.test(source)) return
      const file = path.resolve(path.dirname(importer.split('?')[0]), source)
      if (file.startsWith(root + path.sep)) return
      return file + suffix
    },
    load(id) {
      if (!id.endsWith(suffix)) return
      const file = id.slice(0, -suffix.length)
      if (file.endsWith('.txt'))
        return `export default ${JSON.stringify(readFileSync(file, 'utf8'))}`
      const b64 = JSON.stringify(readFileSync(file).toString('base64'))
      return `const s = atob(${b64}); const u = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); export default u.buffer`
    },
  }
}

// Workers tests: the real app, Durable Objects, KV and R2 inside workerd (miniflare).
export default defineConfig({
  plugins: [
    modulesOutsideRoot(),
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
    // Two shared cores: one workerd, test files one after another.
    fileParallelism: false,
    isolate: false,
  },
})
