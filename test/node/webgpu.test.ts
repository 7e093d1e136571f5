/**
 * The same generation on onnxruntime-node's `webgpu` provider (Dawn over SwiftShader's Vulkan
 * driver on CPU-only machines) equals the CPU result within float tolerance, and the WebGPU
 * provider really ran: ONNX Runtime's own per-node profile of each session names the provider
 * every node executed on, so a silent fallback to the CPU (a missing adapter, an unsupported
 * graph) fails here instead of passing on CPU numbers.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import type { InferenceBackend, ModelSession } from '../../src/pipeline/tensor'
import { imageDiff } from '../browser/golden-compare'
import { GOLDEN, maxAbs, maxAbsDiff } from './golden'
import { RUNTIME_PATHS, skipWithout } from './runtimes'

// A GPU's own Vulkan driver (VK_ICD_FILENAMES) or SwiftShader's; the loader either way.
const SKIP = skipWithout(
  'webgpu test',
  process.env.VK_ICD_FILENAMES ? ['vulkanLoader'] : ['swiftshader', 'vulkanLoader'],
)
process.env.VK_ICD_FILENAMES ??= RUNTIME_PATHS.swiftshader

/**
 * A `webgpu` backend whose sessions profile themselves into `dir/<component>_<time>.json`:
 * each session gets a backend of its own, so each profile file is named after its component.
 */
function profilingBackend(dir: string) {
  const sessions: ModelSession[] = []
  const backend: InferenceBackend = {
    name: createNodeBackend('webgpu').name,
    readsFiles: true,
    async createSession(model, options) {
      const node = createNodeBackend('webgpu', {
        sessionOptions: {
          enableProfiling: true,
          profileFilePrefix: join(dir, options?.label ?? 'session'),
        },
      })
      const session = await node.createSession(model, options)
      sessions.push(session)
      return session
    },
  }
  return { backend, sessions }
}

/** Node events per execution provider in an ONNX Runtime profile (Chrome trace JSON). */
function nodesByProvider(file: string): Record<string, number> {
  const events = JSON.parse(readFileSync(file, 'utf8')) as {
    cat: string
    args?: { provider?: string }
  }[]
  const counts: Record<string, number> = {}
  for (const e of events)
    if (e.cat === 'Node' && e.args?.provider)
      counts[e.args.provider] = (counts[e.args.provider] ?? 0) + 1
  return counts
}

describe.skipIf(SKIP)('webgpu provider', () => {
  it('matches the CPU provider on a guided generation, and ran its nodes on WebGPU', async () => {
    const dir = join(GOLDEN, 'pipeline', 'tiny-sd-optimum')
    const params = {
      prompt: 'a photo of a cat',
      seed: 1,
      steps: 2,
      guidanceScale: 7.5,
      scheduler: 'euler',
    }
    const profiles = mkdtempSync(join(tmpdir(), 'tti-webgpu-profile-'))
    try {
      const { backend, sessions } = profilingBackend(profiles)
      expect(backend.name).toBe('onnxruntime-node:webgpu>cpu')
      const gpu = await new StableDiffusionPipeline(
        await loadModel(folderSource(dir), backend),
      ).generate(params)
      // Releasing a session writes its profile.
      for (const s of sessions) await s.release()
      const byComponent: Record<string, Record<string, number>> = {}
      for (const f of readdirSync(profiles).filter((f) => f.endsWith('.json')))
        byComponent[f.replace(/_\d{4}-.*$/, '')] = nodesByProvider(join(profiles, f))
      // The denoiser and the decoder, where the work is, ran on WebGPU (ORT may keep shape
      // arithmetic on the CPU); the text encoder runs on the CPU by design (CPU_COMPONENTS).
      for (const component of ['unet', 'vae_decoder']) {
        const counts = byComponent[component]
        expect(counts, `${component}: ${JSON.stringify(byComponent)}`).toBeDefined()
        expect(counts.WebGpuExecutionProvider ?? 0, component).toBeGreaterThan(
          counts.CPUExecutionProvider ?? 0,
        )
      }

      const cpu = await new StableDiffusionPipeline(
        await loadModel(folderSource(dir), createNodeBackend('cpu')),
      ).generate(params)
      expect(maxAbsDiff(gpu.latents, cpu.latents)).toBeLessThanOrEqual(
        1e-4 * Math.max(1, maxAbs(cpu.latents)),
      )
      const { worst, share } = imageDiff(gpu.images[0].data, cpu.images[0].data)
      expect(worst).toBeLessThanOrEqual(1)
      expect(share).toBeLessThan(0.01)
    } finally {
      rmSync(profiles, { recursive: true, force: true })
    }
  }, 300_000)
})
