/**
 * Models that live only on the GPU backend: the edge learns each one from the backend's signed
 * manifest (spec and tokenizer files, never weights), validates and keys requests with it, sends
 * token ids, and gets the same PNG as generating locally. The manifest is cached in KV by id and
 * digest; a forged or unsigned one is refused.
 */
import { serve, type ServerType } from '@hono/node-server'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackendApp } from '../../src/backend/service'
import { fetchManifest, manifestModel, manifestPath } from '../../src/engine/backend-models'
import { createPipelineEngine, describeModel } from '../../src/engine/local-engine'
import { createRemoteEngine } from '../../src/engine/remote-engine'
import type { GenerateRequest } from '../../src/engine/types'
import { createNodeBackend } from '../../src/gpu/ort-node'
import { folderSource } from '../../src/node/folder-source'
import { loadModel } from '../../src/pipeline/model'
import { StableDiffusionPipeline } from '../../src/pipeline/stable-diffusion'
import { GOLDEN } from './golden'

const SECRET = 'manifest-test-secret'
let pipeline: StableDiffusionPipeline
let server: ServerType
let base: string
let manifestRequests = 0

beforeAll(async () => {
  pipeline = new StableDiffusionPipeline(
    await loadModel(
      folderSource(join(GOLDEN, 'pipeline', 'tiny-sd-optimum')),
      createNodeBackend('cpu'),
    ),
  )
  const app = createBackendApp({ models: [pipeline], secret: SECRET })
  server = serve({
    fetch: (req) => {
      if (new URL(req.url).pathname.endsWith('/manifest')) manifestRequests++
      return app.fetch(req)
    },
    port: 0,
    hostname: '127.0.0.1',
  })
  await new Promise((r) => server.once('listening', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => server?.close())

/** A KV stand-in that counts what the manifest cache asks of it. */
function memoryStore() {
  const data = new Map<string, string>()
  const calls = { get: 0, put: 0 }
  return {
    calls,
    async get(key: string) {
      calls.get++
      const v = data.get(key)
      return v === undefined ? null : JSON.parse(v)
    },
    async put(key: string, value: string) {
      calls.put++
      data.set(key, value)
    },
  }
}

const request = (model: string): GenerateRequest => ({
  model,
  prompt: 'a red circle on a white background',
  negativePrompt: 'blurry',
  seed: 5,
  steps: 4,
  guidanceScale: 7.5,
  width: 64,
  height: 64,
  scheduler: 'euler_a',
  n: 1,
  truncate: false,
  options: {},
})

describe('models known from the backend manifest', () => {
  it('validates, tokenizes and generates like the local model, with token ids on the wire', async () => {
    const store = memoryStore()
    const { id, digest } = pipeline.spec
    const manifest = await fetchManifest({ base, id, digest, secret: SECRET, fetch, store })
    expect(manifest.spec).toEqual(JSON.parse(JSON.stringify(pipeline.spec)))
    const model = manifestModel(manifest)
    expect(describeModel(model)).toEqual(describeModel(pipeline))
    expect(model.tokenize('a red circle')).toEqual(pipeline.tokenize('a red circle'))

    const bodies: Uint8Array[] = []
    const remote = createRemoteEngine([model], {
      urls: [base],
      secret: SECRET,
      fetch: (u, i) => {
        if (i.body instanceof Uint8Array) bodies.push(i.body)
        return fetch(u, i)
      },
    })
    const [got] = await remote.generate(request(id))
    const [want] = await createPipelineEngine([pipeline]).generate(request(id))
    expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes))).toBe(true)
    expect(bodies).toHaveLength(1)
    const { decodeJob } = await import('../../src/backend/protocol')
    expect(Object.keys(decodeJob(bodies[0]).tensors)).toEqual(['input_ids'])

    // A second isolate reads the manifest from KV, not from the backend.
    const before = manifestRequests
    await fetchManifest({ base, id, digest, secret: SECRET, fetch, store })
    expect(manifestRequests).toBe(before)
    expect(store.calls).toEqual({ get: 2, put: 1 })
  })

  it('refuses a manifest signed with another secret, an unsigned request, and another digest', async () => {
    const { id, digest } = pipeline.spec
    await expect(
      fetchManifest({ base, id, digest, secret: 'not-the-secret', fetch }),
    ).rejects.toThrow(/answered 401/)
    const unsigned = await fetch(`${base}${manifestPath(id)}`)
    expect(unsigned.status).toBe(401)
    await expect(
      fetchManifest({ base, id, digest: 'f'.repeat(64), secret: SECRET, fetch }),
    ).rejects.toThrow(/manifest of another model/)
    // A tampered answer (one byte of the body changed) fails the response signature.
    const tampering = (async (u: string, i: RequestInit) => {
      const res = await fetch(u, i)
      const body = new Uint8Array(await res.arrayBuffer())
      body[body.length - 2] ^= 1
      return new Response(body, { status: res.status, headers: res.headers })
    }) as typeof fetch
    await expect(
      fetchManifest({ base, id, digest, secret: SECRET, fetch: tampering }),
    ).rejects.toThrow(/signature that is invalid/)
  })
})
