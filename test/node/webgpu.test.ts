/**
 * The same generation on onnxruntime-node's `webgpu` provider (Dawn over SwiftShader's Vulkan
 * driver on CPU-only machines) equals the CPU result within float tolerance.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { GOLDEN, maxAbs, maxAbsDiff } from './golden'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

// A GPU's own Vulkan driver (VK_ICD_FILENAMES) or SwiftShader's; the loader either way.
const SKIP = skipWithout(
  'webgpu test',
  process.env.VK_ICD_FILENAMES ? ['vulkanLoader'] : ['swiftshader', 'vulkanLoader'],
)
process.env.VK_ICD_FILENAMES ??= RUNTIME_PATHS.swiftshader

describe.skipIf(SKIP)('webgpu provider', () => {
  it('matches the CPU provider on a guided generation', async () => {
    const dir = join(GOLDEN, 'pipeline', 'tiny-sd-optimum')
    const params = {
      prompt: 'a photo of a cat',
      seed: 1,
      steps: 2,
      guidanceScale: 7.5,
      scheduler: 'euler',
    }
    const gpuBackend = createNodeBackend('webgpu')
    expect(gpuBackend.name).toBe('onnxruntime-node:webgpu>cpu')
    const gpu = await new StableDiffusionPipeline(
      await loadModel(folderSource(dir), gpuBackend),
    ).generate(params)
    const cpu = await new StableDiffusionPipeline(
      await loadModel(folderSource(dir), createNodeBackend('cpu')),
    ).generate(params)
    expect(maxAbsDiff(gpu.latents, cpu.latents)).toBeLessThanOrEqual(
      1e-4 * Math.max(1, maxAbs(cpu.latents)),
    )
    const a = gpu.images[0].data
    const b = cpu.images[0].data
    let differ = 0
    for (let i = 0; i < a.length; i++) {
      expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1)
      if (a[i] !== b[i]) differ++
    }
    expect(differ / a.length).toBeLessThan(0.01)
  }, 300_000)
})
