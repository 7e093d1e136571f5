/**
 * onnxruntime-node on a worker thread: the same results as in place, errors that say what went
 * wrong, and a main thread that keeps running while a model loads or runs (counted timer ticks:
 * in place, a blocking run lets next to none through).
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { float32 } from '../../src/pipeline/tensor'
import { GOLDEN } from './golden'

const DIR = join(GOLDEN, 'pipeline', 'tiny-sd-optimum')
const MODEL = join(import.meta.dirname, '..', '..', 'models', 'tiny-shapes')

/** Timer ticks that ran while `work` was in flight. */
async function ticksDuring(work: () => Promise<unknown>): Promise<number> {
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  return ticks
}

describe('onnxruntime-node on a worker thread', () => {
  it('generates the same image as in place', async () => {
    const params = { prompt: 'a red circle', seed: 3, steps: 4, guidanceScale: 7.5 }
    const inPlace = await new StableDiffusionPipeline(
      await loadModel(folderSource(DIR), createNodeBackend('cpu')),
    ).generate(params)
    const threaded = await new StableDiffusionPipeline(
      await loadModel(folderSource(DIR), createNodeBackend('cpu', { thread: true })),
    ).generate(params)
    expect(Buffer.from(threaded.latents.buffer).equals(Buffer.from(inPlace.latents.buffer))).toBe(
      true,
    )
    expect(threaded.images[0].data).toEqual(inPlace.images[0].data)
  })

  it('keeps the main thread running during a UNet run; in place it blocks', async () => {
    const backends = {
      thread: createNodeBackend('cpu', { thread: true }),
      inPlace: createNodeBackend('cpu'),
    }
    const ticks: Record<string, number> = {}
    for (const [name, backend] of Object.entries(backends)) {
      const model = await loadModel(folderSource(MODEL), backend)
      const s = model.spec
      // One big UNet call (256x256, both guidance halves): long enough for many 1 ms ticks.
      const latent = 256 / s.vaeScaleFactor
      const feeds = {
        [s.io.sample]: float32(new Float32Array(2 * 4 * latent * latent), [2, 4, latent, latent]),
        [s.io.timestep]: float32(new Float32Array([500]), []),
        [s.io.encoderHiddenStates]: float32(new Float32Array(2 * s.tokenWindow * s.hiddenSize), [
          2,
          s.tokenWindow,
          s.hiddenSize,
        ]),
      }
      if (s.timestep.type !== 'float32' || s.timestep.layout !== 'scalar')
        feeds[s.io.timestep] = {
          type: s.timestep.type,
          data:
            s.timestep.type === 'int64'
              ? new BigInt64Array([500n, 500n])
              : new Float32Array([500, 500]),
          dims: [2],
        } as never
      if (s.io.residuals.length) {
        // A ControlNet UNet also takes the residuals: zeros, as the ControlNet gives at scale 0.
        const cn = s.io.controlnet!
        const out = await model.controlnet!.run({
          [cn.sample]: feeds[s.io.sample],
          [cn.timestep]: feeds[s.io.timestep],
          [cn.encoderHiddenStates]: feeds[s.io.encoderHiddenStates],
          [cn.cond]: float32(new Float32Array(2 * 3 * 256 * 256), [2, 3, 256, 256]),
          ...(cn.scale
            ? { [cn.scale.name]: { type: 'float64', data: new Float64Array([0]), dims: [1] } }
            : {}),
        } as never)
        Object.assign(feeds, out)
      }
      await model.unet.run(feeds) // warm up
      ticks[name] = await ticksDuring(() => model.unet.run(feeds))
    }
    // In place the run holds the thread: at most a tick slips in around it. On the worker thread
    // the 1 ms timer keeps firing for the whole run (hundreds of times here).
    expect(ticks.inPlace).toBeLessThanOrEqual(2)
    expect(ticks.thread).toBeGreaterThanOrEqual(10)
  })

  it('reports a session error from the thread with its message', async () => {
    const backend = createNodeBackend('cpu', { thread: true })
    await expect(
      backend.createSession({ bytes: new Uint8Array([1, 2, 3]) }, { label: 'unet' }),
    ).rejects.toThrow(/protobuf|parse|load model|invalid/i)
  })
})
