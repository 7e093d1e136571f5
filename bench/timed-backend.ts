/**
 * A backend wrapper for benchmarks: reports the wall time of every session run with the
 * session's label (`text_encoder`, `unet`, `vae_decoder`).
 */
import type { InferenceBackend } from '../src/pipeline/tensor'

/** Wraps `backend` so `onRun(label, ms)` hears every session run. */
export function timedBackend(
  backend: InferenceBackend,
  onRun: (label: string, ms: number) => void,
): InferenceBackend {
  return {
    name: backend.name,
    readsFiles: backend.readsFiles,
    async createSession(model, options) {
      const s = await backend.createSession(model, options)
      const label = options?.label ?? 'model'
      return {
        inputs: s.inputs,
        outputs: s.outputs,
        release: () => s.release(),
        async run(feeds, names) {
          const t0 = performance.now()
          try {
            return await s.run(feeds, names)
          } finally {
            onRun(label, performance.now() - t0)
          }
        },
      }
    },
  }
}
