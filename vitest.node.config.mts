import { defineConfig } from 'vitest/config'

// Node-side tests: pipeline against golden data, ONNX sessions via onnxruntime-node, browser tests.
export default defineConfig({
  test: {
    include: ['test/node/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
})
