/**
 * Loading real exports as they come: weights in external data (one file, per-tensor files,
 * numbered shards), float16 graph inputs/outputs, float16 weights behind float32 I/O, an fp16
 * UNet paired with an fp32 VAE, and an fp16 VAE that overflows. Each variant is the golden tiny
 * model rewritten (`./onnx-fixtures`) into a temporary folder, and each still reproduces the
 * diffusers reference (exactly where only the storage changed). Sessions load from paths on
 * onnxruntime-node: no weight file is read into JS memory, and metadata is read before weights.
 */
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serve } from '@hono/node-server'
import type { AddressInfo } from 'node:net'
import { createBackendApp } from '../../src/backend/service'
import { createPipelineEngine } from '../../src/engine/local-engine'
import { createRemoteEngine } from '../../src/engine/remote-engine'
import type { GenerateRequest } from '../../src/engine/types'
import { failureProblem } from '../../src/images/create-images'
import { failureOf } from '../../src/engine/errors'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { createWebBackend } from '../../src/gpu/ort-web'
import { DIGEST_CACHE_FILE, folderSource } from '../../src/node/folder-source'
import { describeModelFolder, loadModel } from '../../src/pipeline/model'
import { ModelLoadError, type ModelSource } from '../../src/pipeline/model-source'
import { NonFiniteOutputError, StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import type { InferenceBackend } from '../../src/pipeline/tensor'
import { goldenParams } from '../browser/golden-params'
import { GOLDEN, goldenJson, maxAbs, maxAbsDiff } from './golden'
import {
  externalize,
  float16Interface,
  float16Weights,
  retypeInput,
  type ExternalLayout,
} from './onnx-fixtures'

const BASE = join(GOLDEN, 'pipeline', 'tiny-sd-optimum')
const CASE = goldenJson('pipeline/cases/euler_a_20_cfg7.5_neg_seed42_64x64.json')
const COMPONENTS = ['text_encoder', 'unet', 'vae_decoder'] as const
const tmp = mkdtempSync(join(tmpdir(), 'model-formats-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

/** A copy of the golden model with some component files replaced. */
function variant(
  name: string,
  edit: (component: string, model: Uint8Array) => Record<string, Uint8Array>,
) {
  const dir = join(tmp, name)
  cpSync(BASE, dir, { recursive: true })
  for (const c of COMPONENTS) {
    const original = new Uint8Array(readFileSync(join(BASE, c, 'model.onnx')))
    for (const [file, bytes] of Object.entries(edit(c, original)))
      writeFileSync(join(dir, c, file), bytes)
  }
  return dir
}

/** A source that counts which files were read whole. */
function counting(source: ModelSource) {
  const reads: string[] = []
  return {
    reads,
    source: { ...source, readBytes: (p: string) => (reads.push(p), source.readBytes(p)) },
  }
}

/** The golden case's final latents and image, checked within the README's tolerances. */
function expectReference(res: Awaited<ReturnType<StableDiffusionPipeline['generate']>>, scale = 1) {
  const tol = 1e-3 * scale * Math.max(1, maxAbs(CASE.final_latents))
  expect(maxAbsDiff(res.latents, CASE.final_latents)).toBeLessThanOrEqual(tol)
  const want: number[] = CASE.image.uint8
  let worst = 0
  for (let k = 0; k < want.length; k++)
    worst = Math.max(worst, Math.abs(res.images[0].data[k] - want[k]))
  expect(worst).toBeLessThanOrEqual(scale === 1 ? 1 : 3)
}

const node = createNodeBackend('cpu')
/** Leaves a component as it is. */
const KEEP: Record<string, Uint8Array> = {}

describe.each(['single', 'per-tensor', 'shards'] as ExternalLayout[])(
  'weights in external data (%s)',
  (layout) => {
    let dir: string
    beforeAll(() => {
      dir = variant(`external-${layout}`, (_c, model) => {
        const { model: m, files } = externalize(model, layout)
        return { 'model.onnx': m, ...files }
      })
    })

    it('loads from paths without reading any ONNX file into memory, and matches the reference', async () => {
      const { reads, source } = counting(folderSource(dir))
      const model = await loadModel(source, node)
      expect(reads.filter((p) => !p.endsWith('.json') && !p.endsWith('.txt'))).toEqual([])
      const files = (await describeModelFolder(folderSource(dir))).components.unet.files
      expect(files.length).toBeGreaterThan(1)
      if (layout === 'single') expect(files).toEqual(['unet/model.onnx', 'unet/model.onnx_data'])
      expectReference(await new StableDiffusionPipeline(model).generate(goldenParams(CASE)))
    })

    it('loads the same files as bytes on onnxruntime-web (WebAssembly) with the same digest', async () => {
      const web = await loadModel(folderSource(dir), createWebBackend('node'))
      const native = await describeModelFolder(folderSource(dir))
      expect(web.spec.digest).toBe(native.spec.digest)
      expectReference(await new StableDiffusionPipeline(web).generate(goldenParams(CASE)))
    })
  },
)

describe('digests', () => {
  it('streams and caches file hashes beside the model; a changed file is hashed again', async () => {
    const dir = variant('digest', (c, model) =>
      c === 'unet'
        ? (({ model: m, files }) => ({ 'model.onnx': m, ...files }))(externalize(model, 'single'))
        : KEEP,
    )
    // The fixture is small: cache every file's digest (real folders cache files of 64 MiB up).
    const cached = () => folderSource(dir, { digestCacheMinBytes: 0 })
    const first = await describeModelFolder(cached())
    const cache = JSON.parse(readFileSync(join(dir, DIGEST_CACHE_FILE), 'utf8'))
    expect(Object.keys(cache).sort()).toEqual([
      'text_encoder/model.onnx',
      'tokenizer/merges.txt',
      'unet/model.onnx',
      'unet/model.onnx_data',
      'vae_decoder/model.onnx',
    ])
    const data = readFileSync(join(dir, 'unet/model.onnx_data'))
    const want = await crypto.subtle.digest('SHA-256', data)
    expect(cache['unet/model.onnx_data'].sha256).toBe(Buffer.from(want).toString('hex'))
    expect(cache['unet/model.onnx_data'].size).toBe(
      statSync(join(dir, 'unet/model.onnx_data')).size,
    )
    // The digest does not depend on how the hashes were computed (streamed or in memory).
    const inMemory = await describeModelFolder({ ...cached(), sha256: undefined })
    expect(inMemory.spec.digest).toBe(first.spec.digest)
    // Changing the weights changes the digest, even with a stale cache entry beside them.
    data[data.length - 1] ^= 1
    writeFileSync(join(dir, 'unet/model.onnx_data'), data)
    const changed = await describeModelFolder(cached())
    expect(changed.spec.digest).not.toBe(first.spec.digest)
    // Small files are not cached by default: a folder of them is never written to.
    const small = variant('digest-small', () => KEEP)
    await describeModelFolder(folderSource(small))
    expect(existsSync(join(small, DIGEST_CACHE_FILE))).toBe(false)
  })
})

describe('float16 models', () => {
  const fp16Io = {
    text_encoder: { inputs: [], outputs: ['last_hidden_state', 'pooler_output'] },
    unet: { inputs: ['sample', 'timestep', 'encoder_hidden_states'], outputs: ['out_sample'] },
    vae_decoder: { inputs: ['latent_sample'], outputs: ['sample'] },
  } as const
  const toFp16 = (c: string, m: Uint8Array) => ({
    'model.onnx': float16Interface(m, {
      inputs: [...fp16Io[c as keyof typeof fp16Io].inputs],
      outputs: [...fp16Io[c as keyof typeof fp16Io].outputs],
    }),
  })

  it('runs float16 graph inputs and outputs in every component, converting at the boundary', async () => {
    const dir = variant('fp16-io', toFp16)
    const model = await loadModel(folderSource(dir), node)
    expect(model.spec.types).toEqual({
      hiddenStates: 'float16',
      sample: 'float16',
      encoderHiddenStates: 'float16',
      noisePred: 'float16',
      latentSample: 'float16',
      decoded: 'float16',
    })
    expect(model.spec.timestep).toEqual({ type: 'float16', layout: 'scalar' })
    // Only the I/O is rounded to half precision, so the result stays near the reference.
    expectReference(await new StableDiffusionPipeline(model).generate(goldenParams(CASE)), 30)
  })

  it('runs float16 weights behind float32 inputs and outputs', async () => {
    const dir = variant('fp16-weights', (c, m) =>
      c === 'text_encoder' ? KEEP : { 'model.onnx': float16Weights(m) },
    )
    const model = await loadModel(folderSource(dir), node)
    expect(model.spec.types.sample).toBe('float32')
    expectReference(await new StableDiffusionPipeline(model).generate(goldenParams(CASE)), 30)
  })

  it('pairs an fp16 UNet with an fp32 VAE in one folder', async () => {
    const dir = variant('fp16-unet', (c, m) => (c === 'unet' ? toFp16(c, m) : KEEP))
    const model = await loadModel(folderSource(dir), node)
    expect([model.spec.types.sample, model.spec.types.latentSample]).toEqual(['float16', 'float32'])
    expectReference(await new StableDiffusionPipeline(model).generate(goldenParams(CASE)), 30)
  })

  it('fails with a clear, non-retryable error when an fp16 VAE overflows, instead of a black image', async () => {
    const dir = variant('fp16-overflow', (c, m) =>
      c === 'vae_decoder'
        ? {
            'model.onnx': float16Interface(
              m,
              { inputs: ['latent_sample'], outputs: ['sample'] },
              1e6,
            ),
          }
        : KEEP,
    )
    const engine = createPipelineEngine([
      new StableDiffusionPipeline(await loadModel(folderSource(dir), node)),
    ])
    const [info] = engine.models()
    const error = await engine.generate(overflowRequest(info.id)).catch((e) => e)
    expect(error).toBeInstanceOf(NonFiniteOutputError)
    expect(error.message).toMatch(/VAE decoder returned NaN or infinite values/)
    expect(failureOf(error)).toMatchObject({
      status: 500,
      type: 'generation-non-finite',
      retryable: false,
    })
  })
})

function overflowRequest(model: string): GenerateRequest {
  return {
    model,
    prompt: 'a red circle',
    negativePrompt: '',
    seed: 1,
    steps: 2,
    guidanceScale: 7.5,
    width: 64,
    height: 64,
    scheduler: 'euler',
    n: 1,
    truncate: true,
    options: {},
  }
}

describe('metadata before weights', () => {
  it('refuses an unsupported element type before creating any session', async () => {
    const dir = variant('bf16', (c, m) =>
      c === 'unet' ? { 'model.onnx': retypeInput(m, 'sample', 16) } : KEEP,
    )
    let sessions = 0
    const backend: InferenceBackend = {
      name: 'counting',
      readsFiles: true,
      createSession: (m, o) => (sessions++, node.createSession(m, o)),
    }
    const error = await loadModel(folderSource(dir), backend).catch((e) => e)
    expect(error).toBeInstanceOf(ModelLoadError)
    expect(error.message).toMatch(/unet sample is bfloat16; only float32 and float16 are supported/)
    expect(sessions).toBe(0)
  })

  it('names a missing external data file', async () => {
    const dir = variant('missing-data', (c, m) =>
      c === 'unet' ? { 'model.onnx': externalize(m, 'single').model } : KEEP,
    )
    await expect(describeModelFolder(folderSource(dir))).rejects.toThrow(
      /unet\/model.onnx keeps weights in unet\/model.onnx_data, which is missing/,
    )
  })
})
