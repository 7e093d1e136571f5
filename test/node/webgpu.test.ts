/**
 * The same generation on onnxruntime-node's `webgpu` provider (Dawn over SwiftShader's Vulkan
 * driver on CPU-only machines) equals the CPU result within float tolerance.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { GOLDEN, maxAbs, maxAbsDiff } from './golden'

const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json'
const hasGpu = !!process.env.VK_ICD_FILENAMES || existsSync(ICD)
if (!hasGpu)
  console.warn(`webgpu test skipped: no Vulkan driver (install Debian's chromium for ${ICD})`)
process.env.VK_ICD_FILENAMES ??= ICD

describe.skipIf(!hasGpu)('webgpu provider', () => {
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
