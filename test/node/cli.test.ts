/**
 * The users' side against the real worker (wrangler's local runtime, the bundled model, local
 * KV/R2/Durable Objects): the typed client `src/client`, and the `tti` CLI run as a child
 * process, asserting the PNGs it writes and the exit codes scripts rely on.
 */
import { build } from 'esbuild'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TtiApiError, TtiClient } from '../../src/client/index'
import { decodePicture } from '../../src/images/pictures'
import { startWorker, type RunningWorker } from './worker-server'

let worker: RunningWorker
let key: string
let dir: string

beforeAll(async () => {
  worker = await startWorker()
  key = (await worker.createKey({ name: 'cli-test' })).key
  dir = mkdtempSync(path.join(tmpdir(), 'tti-cli-'))
})

afterAll(async () => {
  await worker?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

interface Run {
  code: number
  stdout: Buffer
  stderr: string
}

/**
 * Runs `tsx bin/tti.ts …args` (what `npx tsx` and `npm run tti --` run, without npm's own
 * warnings on stderr), or the `bin/tti.mjs` shim, with TTI_* from `env`.
 */
function tti(
  args: string[],
  env: Record<string, string> = {},
  shim = false,
  cwd?: string,
): Promise<Run> {
  const [cmd, pre] = shim
    ? [process.execPath, [path.resolve('bin/tti.mjs')]]
    : [path.resolve('node_modules', '.bin', 'tsx'), [path.resolve('bin/tti.ts')]]
  return new Promise((resolve) => {
    execFile(
      cmd,
      [...pre, ...args],
      {
        encoding: 'buffer',
        env: childEnv(env),
        timeout: 60_000,
        cwd,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
        resolve({ code, stdout, stderr: stderr.toString() })
      },
    )
  })
}

/**
 * This process's environment without TTI_* and ADMIN_TOKEN (those must come from the test), plus
 * `env`.
 */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const out = { ...process.env }
  for (const k of Object.keys(out)) if (k.startsWith('TTI_') || k === 'ADMIN_TOKEN') delete out[k]
  return Object.assign(out, env)
}

/** Width and height from a PNG's IHDR, after checking the signature. */
function pngSize(bytes: Buffer): { width: number; height: number } {
  expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) }
}

const user = () => ({ TTI_URL: worker.url, TTI_API_KEY: key })

/** A prompt over the bundled model's 18-token window. */
const LONG = Array(8).fill('a red circle').join(' and ')

describe('TtiClient', () => {
  it('generates, reports a cache hit the second time, and fetches the PNG by hash', async () => {
    const client = new TtiClient({ baseUrl: `${worker.url}/`, apiKey: key })
    const params = { prompt: 'a blue square', seed: 7, steps: 2, width: 64, height: 64 }
    const first = await client.generate(params)
    expect(first.cached).toBe(false)
    expect(first.images).toHaveLength(1)
    const [img] = first.images
    expect(img).toMatchObject({ seed: 7, width: 64, height: 64 })
    expect(img.url).toBe(`${worker.url}/v1/images/${img.sha256}.png`)
    expect(first.rateLimit?.limit).toBeGreaterThan(0)

    const second = await client.generate(params)
    expect(second.cached).toBe(true)
    expect(second.images[0].sha256).toBe(img.sha256)

    const png = Buffer.from(await client.image(img.sha256))
    expect(pngSize(png)).toEqual({ width: 64, height: 64 })
    const { createHash } = await import('node:crypto')
    expect(createHash('sha256').update(png).digest('hex')).toBe(img.sha256)
  })

  it('reports each denoising step with onProgress (server-sent events), then the images', async () => {
    const client = new TtiClient({ baseUrl: worker.url, apiKey: key })
    const params = { prompt: 'a green circle', seed: 9, steps: 5 }
    const steps: number[] = []
    const first = await client.generate(params, {
      onProgress: (p) => {
        expect(p).toMatchObject({ total_steps: 5, image: 0, n: 1 })
        steps.push(p.step)
      },
    })
    expect(steps).toEqual([1, 2, 3, 4, 5])
    expect(first.cached).toBe(false)
    expect(first.rateLimit?.limit).toBeGreaterThan(0)
    const plain = await client.generate(params)
    expect(plain).toMatchObject({ cached: true, images: first.images })
    const hit = await client.generate(params, { onProgress: () => steps.push(-1) })
    expect(hit).toMatchObject({ cached: true, images: first.images })
    expect(steps).toHaveLength(5) // a hit has no steps
  })

  it('lists models with their limits and schedulers', async () => {
    const [model] = await new TtiClient({ baseUrl: worker.url, apiKey: key }).models()
    expect(model.id).toBeTruthy()
    expect(model.limits.max_width).toBeGreaterThanOrEqual(64)
    expect(model.schedulers).toContain('euler')
  })

  it('turns problem+json answers into TtiApiError with status, slug and detail', async () => {
    const client = new TtiClient({ baseUrl: worker.url, apiKey: key })
    const invalid = await client.generate({ prompt: 'x', steps: 0 }).catch((e: unknown) => e)
    expect(invalid).toBeInstanceOf(TtiApiError)
    expect(invalid).toMatchObject({
      status: 422,
      slug: 'validation-error',
      type: 'https://edge-tti.dev/problems/validation-error',
    })
    expect((invalid as TtiApiError).detail).toMatch(/steps/)
    expect((invalid as TtiApiError).problem.errors?.[0].field).toBe('steps')
    // Streaming too: errors before the stream starts are the same problem.
    const streamed = await client
      .generate({ prompt: 'x', steps: 0 }, { onProgress: () => {} })
      .catch((e: unknown) => e)
    expect(streamed).toMatchObject({ status: 422, slug: 'validation-error' })

    const anon = new TtiClient({ baseUrl: worker.url, apiKey: 'tti_' + 'A'.repeat(43) })
    await expect(anon.models()).rejects.toMatchObject({ status: 401, slug: 'unauthorized' })
    await expect(client.image('0'.repeat(64))).rejects.toMatchObject({
      status: 404,
      slug: 'not-found',
    })
  })

  it('manages keys with the admin token and reports 429 with Retry-After', async () => {
    const admin = new TtiClient({ baseUrl: worker.url, adminToken: worker.adminToken })
    const created = await admin.createKey({
      name: 'ci',
      rate_limit: { burst: 1, period_seconds: 3600 },
    })
    expect(created.key).toMatch(/^tti_/)
    expect((await admin.listKeys()).map((k) => k.id)).toContain(created.id)

    const tight = new TtiClient({ baseUrl: worker.url, apiKey: created.key })
    await tight.generate({ prompt: 'a dot', seed: 1, steps: 1 })
    const limited = await tight.generate({ prompt: 'a dot', seed: 2, steps: 1 }).catch((e) => e)
    expect(limited).toMatchObject({ status: 429, slug: 'rate-limited' })
    expect((limited as TtiApiError).retryAfter).toBeGreaterThan(0)

    expect((await admin.revokeKey(created.id)).revoked_at).toBeTruthy()
    await expect(tight.models()).rejects.toMatchObject({ status: 403, slug: 'key-revoked' })
  })
})

describe('TtiClient in Deno (runtime-neutral: fetch only)', () => {
  it('generates and maps a problem to TtiApiError', async () => {
    // Bundled platform-neutral, as a Deno or browser app would ship it.
    const out = await build({
      stdin: {
        contents: `
          import { TtiApiError, TtiClient } from './src/client/index'
          const [baseUrl, apiKey] = Deno.args
          const tti = new TtiClient({ baseUrl, apiKey })
          const { images } = await tti.generate({ prompt: 'a blue square', seed: 7, steps: 2 })
          const png = await tti.image(images[0].sha256)
          const err = await tti.generate({ prompt: 'x', steps: 0 }).catch((e) => e)
          console.log(JSON.stringify({
            sha256: images[0].sha256,
            bytes: png.length,
            error: err instanceof TtiApiError ? [err.status, err.slug] : String(err),
          }))`,
        resolveDir: process.cwd(),
        loader: 'ts',
      },
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      write: false,
      logLevel: 'error',
    })
    const bundle = path.join(dir, 'client-deno.mjs')
    writeFileSync(bundle, out.outputFiles[0].text)
    const deno = path.join('node_modules', '.bin', 'deno')
    const run = await new Promise<string>((resolve, reject) =>
      execFile(
        deno,
        ['run', `--allow-net=127.0.0.1`, bundle, worker.url, key],
        { env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' }, timeout: 60_000 },
        (err, stdout, stderr) => (err ? reject(new Error(stderr || String(err))) : resolve(stdout)),
      ),
    )
    const got = JSON.parse(run)
    expect(got.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(got.bytes).toBeGreaterThan(100)
    expect(got.error).toEqual([422, 'validation-error'])
  })
})

describe('the progress and job examples of the README and docs/api.md', () => {
  /** The ```sh blocks under `heading` in `file`, up to the next heading of that level or above. */
  function shBlocks(file: string, heading: string): string[] {
    const [, rest] = readFileSync(file, 'utf8').split(`\n${heading}\n`)
    const level = heading.split(' ')[0]
    const section = rest.split(new RegExp(`\n#{2,${level.length}} `))[0]
    return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1])
  }

  /** Runs a block with bash in `dir`, localhost:8787 pointed at the test worker. */
  function bash(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', script.replaceAll('localhost:8787', worker.url)],
        { cwd: dir, timeout: 60_000, env: { ...process.env, KEY: key } },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      ),
    )
  }

  /** Checks the output of the README's block: a stream of steps, then the polled job. */
  function expectStreamThenJob(out: string, what: string): void {
    const steps = [...out.matchAll(/^event: progress\ndata: (.*)$/gm)].map((m) => JSON.parse(m[1]))
    expect(
      steps.map((p) => p.step),
      what,
    ).toEqual([1, 2, 3, 4])
    const done = JSON.parse(/^event: done\ndata: (.*)$/m.exec(out)![1])
    expect(done.images[0].url).toMatch(/\/v1\/images\/[0-9a-f]{64}\.png$/)
    const job = JSON.parse(readFileSync(path.join(dir, 'job.json'), 'utf8'))
    expect(job).toMatchObject({ status: 'succeeded', images: [{ seed: expect.any(Number) }] })
  }

  it('README: streams steps with curl -N, then starts a job and polls it to success', async () => {
    const [block] = shBlocks('README.md', '## Progress and long jobs')
    const run = await bash(block)
    expect(run.stderr).not.toMatch(/curl: /)
    expect(run.code).toBe(0)
    expectStreamThenJob(run.stdout, 'README')
  })

  it('docs/api.md: the event stream, then the respond-async job and its polling loop', async () => {
    const [stream] = shBlocks('docs/api.md', '#### Progress: `Accept: text/event-stream`')
    const [job] = shBlocks('docs/api.md', '#### Long jobs: `Prefer: respond-async`')
    const run = await bash(`${stream}\n${job}`)
    expect(run.code).toBe(0)
    expectStreamThenJob(run.stdout, 'docs/api.md')
    expect(run.stdout).toMatch(/^\/v1\/jobs\/[0-9a-f]{64}$/m)
  })
})

describe('the README quick start, as written', () => {
  it('makes a key with npm run keys and writes a PNG with curl', async () => {
    const [, rest] = readFileSync('README.md', 'utf8').split('\n## Quick start\n')
    const block = [...rest.matchAll(/```sh\n([\s\S]*?)```/g)][0][1]
    const script = block
      .replaceAll('localhost:8787', worker.url)
      .replace('-o circle.png', `-o ${path.join(dir, 'quick.png')}`)
    const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', script],
        {
          timeout: 120_000,
          env: { ...process.env, ADMIN_TOKEN: worker.adminToken, TTI_URL: worker.url },
        },
        (err, _stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
      ),
    )
    expect(run.code, run.stderr).toBe(0)
    expect(pngSize(readFileSync(path.join(dir, 'quick.png')))).toEqual({ width: 64, height: 64 })
  })

  it('npm run keys names the server it called when it is refused or unreachable', async () => {
    const keys = (env: Record<string, string>) =>
      new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(
          path.join('node_modules', '.bin', 'tsx'),
          ['scripts/keys.ts', 'list'],
          { timeout: 60_000, env: { ...process.env, ...env } },
          (err, _o, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
        ),
      )
    const refused = await keys({ ADMIN_TOKEN: 'wrong', TTI_URL: worker.url })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`${worker.url} answered 401`)
    const down = await keys({ ADMIN_TOKEN: 'x', TTI_URL: 'http://127.0.0.1:9' })
    expect(down.code).toBe(1)
    expect(down.stderr).toContain('cannot reach http://127.0.0.1:9/v1/keys')
  })
})

describe('pictures: the README and docs/api.md examples, tti edit and the client', () => {
  const examples = path.resolve('docs/examples')
  const inDir = (script: string) => script.replaceAll('docs/examples/', `${examples}/`)
  function bashHere(script: string) {
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', inDir(script).replaceAll('localhost:8787', worker.url)],
        { cwd: dir, timeout: 120_000, env: { ...process.env, KEY: key } },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      ),
    )
  }
  const sh = (file: string, heading: string) => {
    const [, rest] = readFileSync(file, 'utf8').split(`\n${heading}\n`)
    return [...rest.matchAll(/```sh\n([\s\S]*?)```/g)][0][1]
  }

  it('README: edit by URL, inpaint from files, follow a silhouette (curl)', async () => {
    const run = await bashHere(
      sh('README.md', '## Pictures: image-to-image, inpainting, ControlNet'),
    )
    expect(run.code, run.stderr).toBe(0)
    for (const f of ['edit.png', 'inpaint.png', 'control.png'])
      expect(pngSize(readFileSync(path.join(dir, f))), f).toEqual({ width: 64, height: 64 })
    // Inpainting kept the left half (outside the mask) close to the edited picture.
    const edit = (await decodePicture('image', readFileSync(path.join(dir, 'edit.png')))).rgb
    const inpaint = (await decodePicture('image', readFileSync(path.join(dir, 'inpaint.png')))).rgb
    let far = 0
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 24; x++)
        for (let c = 0; c < 3; c++) {
          const k = (y * 64 + x) * 3 + c
          if (Math.abs(edit[k] - inpaint[k]) > 24) far++
        }
    expect(far / (64 * 24 * 3)).toBeLessThan(0.05)
  })

  it('docs/api.md: inpainting from files, then by reference, is a cache hit', async () => {
    const run = await bashHere(sh('docs/api.md', '#### Pictures'))
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/^x-cache: HIT/im)
  })

  it('tti edit sends a file (and a mask), exits 2 on a bad picture', async () => {
    const src = path.join(dir, 'edit-src.png')
    const made = await tti(
      ['generate', 'a red circle', '-o', src, '--seed', '8', '--steps', '4'],
      user(),
    )
    expect(made.code, made.stderr).toBe(0)
    const out = path.join(dir, 'edited.png')
    const run = await tti(
      ['edit', src, 'a blue circle', '-o', out, '--strength', '0.9', '--seed', '8', '--steps', '4'],
      user(),
    )
    expect(run.code, run.stderr).toBe(0)
    expect(pngSize(readFileSync(out))).toEqual({ width: 64, height: 64 })
    const masked = await tti(
      [
        'edit',
        src,
        'a blue circle',
        '-o',
        out,
        '--mask',
        path.join(examples, 'mask-right-half.png'),
      ],
      user(),
    )
    expect(masked.code, masked.stderr).toBe(0)
    const bad = path.join(dir, 'bad.png')
    writeFileSync(bad, 'not a picture')
    const refused = await tti(['edit', bad, 'x', '-o', out], user())
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/image: .*not a PNG or JPEG/)
    const misplaced = await tti(['generate', 'x', '-o', out, '--mask', bad], user())
    expect(misplaced.code).toBe(2)
    expect(misplaced.stderr).toMatch(/--mask and --strength belong to tti edit/)
  })

  it('TtiClient.generate sends bytes as multipart parts and references as text', async () => {
    const client = new TtiClient({ baseUrl: worker.url, apiKey: key })
    const first = await client.generate({ prompt: 'a red circle', seed: 12, steps: 4 })
    const mask = new Uint8Array(readFileSync(path.join(examples, 'mask-right-half.png')))
    const byRef = await client.generate({
      prompt: 'a green circle',
      image: first.images[0].url,
      mask,
      seed: 12,
      steps: 4,
    })
    expect(byRef.images[0].width).toBe(64)
    const bytes = await client.image(first.images[0].sha256)
    const byBytes = await client.generate({
      prompt: 'a green circle',
      image: bytes,
      mask,
      seed: 12,
      steps: 4,
    })
    // The same picture by reference or by bytes is the same request: one cache entry.
    expect(byBytes.cached).toBe(true)
    expect(byBytes.images[0].sha256).toBe(byRef.images[0].sha256)
  })
})

describe('tti CLI', () => {
  it('generate writes the PNG, prints its permanent URL and exits 0', async () => {
    const out = path.join(dir, 'circle.png')
    const args = ['generate', 'a red circle', '-o', out, '--seed', '42', '--steps', '4']
    const flags = ['--guidance', '7.5', '--size', '64x64', '--scheduler', 'euler']
    const run = await tti([...args, ...flags, '--negative', 'blurry'], user())
    expect(run.stderr).toContain('seed 42')
    expect(run.code).toBe(0)
    const png = readFileSync(out)
    expect(pngSize(png)).toEqual({ width: 64, height: 64 })
    const url = run.stdout.toString().trim()
    expect(url).toMatch(new RegExp(`^${worker.url}/v1/images/[0-9a-f]{64}\\.png$`))
    expect(Buffer.from(await (await fetch(url)).arrayBuffer()).equals(png)).toBe(true)

    // Same inputs through --json, the documented flags and the npm bin shim: a cache hit.
    const again = await tti(
      [...args, ...flags, '--negative', 'blurry', '--json', '--url', worker.url, '--key', key],
      {},
      true,
    )
    expect(again.code).toBe(0)
    const json = JSON.parse(again.stdout.toString())
    expect(json).toMatchObject({ cached: true, files: [out], images: [{ url, seed: 42 }] })
  })

  it('writes several images as FILE-1.png… and one to stdout with -o -', async () => {
    const base = path.join(dir, 'many.png')
    const many = await tti(['generate', 'two dots', '-o', base, '-n', '2', '--steps', '1'], user())
    expect(many.code).toBe(0)
    expect(many.stdout.toString().trim().split('\n')).toHaveLength(2)
    for (const f of ['many-1.png', 'many-2.png']) {
      expect(pngSize(readFileSync(path.join(dir, f))).width).toBe(64)
    }

    // --progress streams the steps (SSE) into a bar on stderr; stdout stays the PNG alone.
    const piped = await tti(['generate', 'a dot', '-o', '-', '--steps', '3', '--progress'], user())
    expect(piped.code).toBe(0)
    expect(pngSize(piped.stdout).width).toBe(64)
    expect(piped.stderr).toContain('generating…')
    expect(piped.stderr).toContain(`[${'#'.repeat(24)}] 3/3 steps`)
  })

  it('exits 2 with a plain message on bad input, locally or from the server', async () => {
    const out = path.join(dir, 'bad.png')
    const cases: [string[], RegExp][] = [
      [['generate', 'x', '-o', out, '--size', '64'], /--size must look like 64x64/],
      [['generate', 'x', '-o', out, '--seed', 'abc'], /--seed must be an integer/],
      [['generate', '-o', out], /one prompt argument/],
      [['generate', 'x'], /needs -o/],
      [['generate', 'x', '-o', out, '--bogus'], /Unknown option '--bogus'/],
      [['frobnicate'], /unknown command/],
      [['generate', 'x', '-o', out, '--steps', '0'], /steps: must be between 1 and \d+/],
      [['generate', 'x', '-o', out, '--scheduler', 'nope'], /scheduler: must be one of/],
      // The API advises its JSON field; the CLI its own flag.
      [
        ['generate', LONG, '-o', out],
        /the prompt has \d+ tokens; the model takes 18 \(pass --truncate/,
      ],
      [['generate', 'x', '--negative', LONG, '-o', out], /--negative has \d+ tokens/],
    ]
    for (const [args, message] of cases) {
      const run = await tti(args, user())
      expect({ args, code: run.code }).toEqual({ args, code: 2 })
      expect(run.stderr).toMatch(message)
      expect(run.stderr).not.toMatch(/at .*\.ts:\d+/) // no stack traces
      expect(run.stderr).not.toContain('"truncate": true')
    }
    const cut = await tti(['generate', LONG, '-o', out, '--truncate', '--steps', '1'], user())
    expect(cut.code, cut.stderr).toBe(0)
    expect(pngSize(readFileSync(out)).width).toBe(64)
  })

  it('keys reads the admin token from ./.dev.vars as npm run keys does', async () => {
    const local = mkdtempSync(path.join(tmpdir(), 'tti-dev-vars-'))
    try {
      const env = { TTI_URL: worker.url }
      const none = await tti(['keys', 'list'], env, false, local)
      expect(none.code).toBe(3)
      expect(none.stderr).toMatch(/TTI_ADMIN_TOKEN.*--admin-token.*\.dev\.vars/)
      writeFileSync(path.join(local, '.dev.vars'), `ADMIN_TOKEN=${worker.adminToken}\n`)
      const listed = await tti(['keys', 'list'], env, false, local)
      expect(listed.code, listed.stderr).toBe(0)
      expect(JSON.parse(listed.stdout.toString()).keys.length).toBeGreaterThan(0)
      // Flags and TTI_ADMIN_TOKEN still win over the file.
      const flag = await tti(['keys', 'list', '--admin-token', 'nope'], env, false, local)
      expect(flag.code).toBe(3)
    } finally {
      rmSync(local, { recursive: true, force: true })
    }
  })

  it('exits 3 for a missing, invalid or revoked key and 4 when rate limited', async () => {
    const out = path.join(dir, 'auth.png')
    const gen = ['generate', 'x', '-o', out, '--steps', '1']
    const missing = await tti(gen, { TTI_URL: worker.url })
    expect([missing.code, missing.stderr]).toEqual([
      3,
      'tti: no API key: set TTI_API_KEY or pass --key\n',
    ])
    const wrong = await tti(gen, {
      ...user(),
      TTI_API_KEY: `tti_${randomBytes(32).toString('base64url')}`,
    })
    expect([wrong.code, wrong.stderr]).toEqual([3, 'tti: invalid API key\n'])

    const adminEnv = { TTI_URL: worker.url, TTI_ADMIN_TOKEN: worker.adminToken }
    const created = await tti(
      ['keys', 'create', '--name', 'ci', '--burst', '1', '--period', '3600'],
      adminEnv,
    )
    expect(created.code).toBe(0)
    const record = JSON.parse(created.stdout.toString())
    expect(record).toMatchObject({ name: 'ci', rate_limit: { burst: 1, period_seconds: 3600 } })
    const listed = await tti(['keys', 'list'], adminEnv)
    expect(JSON.parse(listed.stdout.toString()).keys.map((k: { id: string }) => k.id)).toContain(
      record.id,
    )

    const ci = { TTI_URL: worker.url, TTI_API_KEY: record.key }
    expect((await tti([...gen, '--seed', '1'], ci)).code).toBe(0)
    const limited = await tti([...gen, '--seed', '2'], ci)
    expect(limited.code).toBe(4)
    expect(limited.stderr).toMatch(/^tti: rate limited: .*\(retry in \d+ s\)\n$/)

    const reader = await tti(['keys', 'create', '--name', 'reader', '--scopes', 'read'], adminEnv)
    expect(JSON.parse(reader.stdout.toString()).scopes).toEqual(['read'])
    const noScope = await tti(gen, {
      TTI_URL: worker.url,
      TTI_API_KEY: JSON.parse(reader.stdout.toString()).key,
    })
    expect(noScope.code).toBe(3)

    expect((await tti(['keys', 'revoke', record.id], adminEnv)).code).toBe(0)
    const revoked = await tti(['models'], ci)
    expect([revoked.code, revoked.stderr]).toEqual([3, 'tti: The API key has been revoked\n'])
    const badAdmin = await tti(['keys', 'list'], { ...adminEnv, TTI_ADMIN_TOKEN: 'nope' })
    expect(badAdmin.code).toBe(3)
  })

  it('models prints the served models; an unreachable server exits 5', async () => {
    const models = await tti(['models'], user())
    expect(models.code).toBe(0)
    expect(models.stdout.toString()).toMatch(/schedulers: .*euler/)

    const down = await tti(['models'], { TTI_URL: 'http://127.0.0.1:9', TTI_API_KEY: key })
    expect(down.code).toBe(5)
    expect(down.stderr).toMatch(/^tti: fetch failed/)
  })
})

describe('tti embed-url and prebuild', () => {
  it('embed-url prints a signed URL (or an <img>, or JSON) that shows the image without a key', async () => {
    const args = ['embed-url', 'a red circle', '--seed', '63001', '--steps', '1']
    const restricted = [...args, '--expires-in', '1h', '--origin', 'http://localhost:8080']
    const run = await tti(restricted, user())
    expect(run.code).toBe(0)
    const url = run.stdout.toString().trim()
    expect(url).toMatch(new RegExp(`^${worker.url}/v1/embeds/[\\w-]+\\.[\\w-]{43}\\.png$`))
    const shown = await fetch(url, { headers: { Referer: 'http://localhost:8080/post.html' } })
    expect([shown.status, shown.headers.get('content-type')]).toEqual([200, 'image/png'])
    expect(pngSize(Buffer.from(await shown.arrayBuffer())).width).toBe(64)
    expect((await fetch(url, { headers: { Referer: 'http://elsewhere.test/' } })).status).toBe(403)

    const json = JSON.parse((await tti([...restricted, '--json'], user())).stdout.toString())
    expect(json).toMatchObject({ origins: ['http://localhost:8080'], params: { seed: 63001 } })
    expect(Date.parse(json.expires_at) - Date.now()).toBeGreaterThan(3500_000)
    const html = (await tti([...args, '--html'], user())).stdout.toString()
    expect(html).toMatch(
      /^<img src="http:\/\/[^"]+\.png" width="64" height="64" alt="a red circle">\n$/,
    )
  })

  it('embed-url exits 2 on bad input and 3 without the embed scope', async () => {
    const cases: [string[], RegExp][] = [
      [['embed-url', 'x'], /needs --seed/],
      [['embed-url', 'x', '--seed', '1', '-n', '2'], /names one image/],
      [['embed-url', 'x', '--seed', '1', '--expires-in', 'soon'], /--expires-in must look like/],
      [
        ['embed-url', 'x', '--seed', '1', '--origin', 'ftp://x.test'],
        /origins\.0: must be an origin/,
      ],
      [['embed-url', 'x', '--seed', '1', '--steps', '0'], /steps: must be between/],
    ]
    for (const [args, message] of cases) {
      const run = await tti(args, user())
      expect({ args, code: run.code }).toEqual({ args, code: 2 })
      expect(run.stderr).toMatch(message)
    }
    const generateOnly = await worker.createKey({ scopes: ['generate', 'read'] })
    const noScope = await tti(['embed-url', 'x', '--seed', '1'], {
      TTI_URL: worker.url,
      TTI_API_KEY: generateOnly.key,
    })
    expect(noScope.code).toBe(3)
    expect(noScope.stderr).toMatch(/"embed" scope/)
  })

  it('prebuild writes {id: permanent URL}, in chunks of the batch limit; a rerun is all hits', async () => {
    const prompts = path.join(dir, 'prompts.json')
    writeFileSync(prompts, JSON.stringify(['a red circle', { id: 'sq', prompt: 'a blue square' }]))
    const out = path.join(dir, 'urls.json')
    const run = await tti(
      ['prebuild', prompts, '-o', out, '--seed', '63011', '--steps', '1'],
      user(),
    )
    expect(run.stderr).toMatch(/^2 of 2 images \(2 generated\)/)
    expect(run.code).toBe(0)
    const urls = JSON.parse(readFileSync(out, 'utf8'))
    expect(Object.keys(urls)).toEqual(['a red circle', 'sq'])
    for (const url of Object.values(urls) as string[]) {
      expect(url).toMatch(new RegExp(`^${worker.url}/v1/images/[0-9a-f]{64}\\.png$`))
      expect(pngSize(Buffer.from(await (await fetch(url)).arrayBuffer())).width).toBe(64)
    }
    const again = await tti(
      ['prebuild', prompts, '--json', '--seed', '63011', '--steps', '1'],
      user(),
    )
    expect(again.code).toBe(0)
    const answer = JSON.parse(again.stdout.toString())
    expect(Object.values(answer.images).every((i) => (i as { cached: boolean }).cached)).toBe(true)
    expect(answer.images.sq.url).toBe(urls.sq)

    // More items than one request may hold: split into several batch calls.
    const many = Object.fromEntries(
      Array.from({ length: 70 }, (_, i) => [`p${i}`, { prompt: 'a green dot', seed: 63012 }]),
    )
    writeFileSync(prompts, JSON.stringify(many))
    const chunked = await tti(['prebuild', prompts, '--steps', '1'], user())
    expect(chunked.code).toBe(0)
    expect(chunked.stderr).toMatch(/^70 of 70 images \(1 generated\)/)
    expect(Object.keys(JSON.parse(chunked.stdout.toString()))).toHaveLength(70)
  })

  it('prebuild reports failed items on stderr, still writes the rest, and exits by the failure', async () => {
    const prompts = path.join(dir, 'mixed.json')
    const out = path.join(dir, 'mixed-urls.json')
    writeFileSync(
      prompts,
      JSON.stringify({
        ok: { prompt: 'a dot', seed: 63021 },
        big: { prompt: 'a dot', steps: 100_000 },
      }),
    )
    const run = await tti(['prebuild', prompts, '-o', out, '--steps', '1'], user())
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/^tti: big: The request has invalid fields: steps: must be between/m)
    expect(Object.keys(JSON.parse(readFileSync(out, 'utf8')))).toEqual(['ok'])

    const { key: tight } = await worker.createKey({
      rate_limit: { burst: 1, period_seconds: 3600 },
    })
    writeFileSync(
      prompts,
      JSON.stringify([
        { prompt: 'a dot', seed: 63022 },
        { prompt: 'a dot', seed: 63023 },
      ]),
    )
    const limited = await tti(['prebuild', prompts, '--steps', '1'], {
      TTI_URL: worker.url,
      TTI_API_KEY: tight,
    })
    expect(limited.code).toBe(4)
    expect(limited.stderr).toMatch(/^tti: 1: Rate limit exceeded/m)

    const usage: [string[], RegExp][] = [
      [['prebuild'], /prebuild takes one file/],
      [['prebuild', path.join(dir, 'missing.json')], /cannot read/],
      [['prebuild', path.join(dir, 'not-json.txt')], /is not JSON/],
      [['prebuild', prompts, '-n', '2'], /items\.0\.n: unknown field/],
    ]
    writeFileSync(path.join(dir, 'not-json.txt'), 'not json')
    for (const [args, message] of usage) {
      const bad = await tti(args, user())
      expect({ args, code: bad.code }).toEqual({ args, code: 2 })
      expect(bad.stderr).toMatch(message)
    }
  })
})

describe('output formats: tti --format, prebuild --html and the client', () => {
  it('generate --format webp --quality writes WebP and prints the variant URL', async () => {
    const out = path.join(dir, 'circle.webp')
    const args = ['generate', 'a red circle', '-o', out, '--seed', '63101', '--steps', '1']
    const run = await tti([...args, '--format', 'webp', '--quality', '70'], user())
    expect(run.stderr).toContain('seed 63101')
    expect(run.code).toBe(0)
    const webp = readFileSync(out)
    expect([webp.subarray(0, 4).toString(), webp.subarray(8, 12).toString()]).toEqual([
      'RIFF',
      'WEBP',
    ])
    const url = run.stdout.toString().trim()
    expect(url).toMatch(new RegExp(`^${worker.url}/v1/images/[0-9a-f]{64}\\.webp\\?q=70$`))
    expect(Buffer.from(await (await fetch(url)).arrayBuffer()).equals(webp)).toBe(true)

    const bad = await tti([...args, '--format', 'gif'], user())
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--format must be one of png, webp, jpeg')
    const refused = await tti([...args, '--quality', '50'], user()) // a PNG has no quality
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('output_compression')
  })

  it('prebuild --html writes <picture> markup whose every srcset URL serves its width', async () => {
    const prompts = path.join(dir, 'pictures.json')
    writeFileSync(prompts, JSON.stringify({ hero: 'a red circle' }))
    const run = await tti(
      ['prebuild', prompts, '--html', '--seed', '63102', '--steps', '1'],
      user(),
    )
    expect(run.code).toBe(0)
    const { hero } = JSON.parse(run.stdout.toString()) as { hero: string }
    expect(hero).toMatch(/^<picture><source type="image\/webp" srcset="[^"]+" sizes="[^"]+">/)
    expect(hero).toContain('width="64" height="64" alt="a red circle"')
    const sets = [...hero.matchAll(/srcset="([^"]+)"/g)].map((m) => m[1])
    expect(sets).toHaveLength(2)
    for (const [set, type] of [
      [sets[0], 'image/webp'],
      [sets[1], 'image/png'],
    ]) {
      const entries = set.split(', ').map((e) => e.split(' '))
      expect(entries.map(([, w]) => w)).toEqual(['16w', '32w', '48w', '64w'])
      for (const [url] of entries) {
        const res = await fetch(url)
        expect(res.status, url).toBe(200)
        expect(res.headers.get('Content-Type')).toBe(type)
      }
    }
  })

  it('TtiClient.image fetches a variant; imageUrl spells it as the server does', async () => {
    const client = new TtiClient({ baseUrl: worker.url, apiKey: key })
    const { images } = await client.generate({ prompt: 'a red circle', seed: 63103, steps: 1 })
    const [img] = images
    const jpeg = await client.image(img.sha256, { format: 'jpeg', width: 32, quality: 60 })
    const decoded = await decodePicture('image', jpeg)
    expect([decoded.width, decoded.height]).toEqual([32, 32])
    expect(client.imageUrl(img.sha256, { format: 'jpeg', width: 32, quality: 60 })).toBe(
      `${worker.url}/v1/images/${img.sha256}.jpg?w=32&q=60`,
    )
    // The default quality is left out of the URL: one spelling, one cache entry.
    expect(client.imageUrl(img.sha256, { format: 'webp', quality: 80 })).toBe(
      `${worker.url}/v1/images/${img.sha256}.webp`,
    )
    const err = await client.image(img.sha256, { format: 'webp', width: 128 }).catch((e) => e)
    expect(err).toBeInstanceOf(TtiApiError)
    expect(err).toMatchObject({ status: 422, slug: 'validation-error' })
  })
})

describe("docs/api.md's variants example, as written", () => {
  it('fetches a WebP width and a JPEG quality, then the WebP straight from POST', async () => {
    const heading = '### `GET /v1/images/{sha256}.{format}`: variants'
    const [, rest] = readFileSync('docs/api.md', 'utf8').split(`\n${heading}\n`)
    const script = /```sh\n([\s\S]*?)```/.exec(rest.split(/\n#{2,3} /)[0])![1]
    const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', script.replaceAll('localhost:8787', worker.url)],
        { cwd: dir, timeout: 60_000, env: { ...process.env, KEY: key } },
        (err, _stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
      ),
    )
    expect(run.code, run.stderr).toBe(0)
    const small = readFileSync(path.join(dir, 'hero-32.webp'))
    expect(small.subarray(8, 12).toString()).toBe('WEBP')
    const jpeg = await decodePicture('image', readFileSync(path.join(dir, 'hero.jpg')))
    expect([jpeg.width, jpeg.height]).toEqual([64, 64])
    expect(readFileSync(path.join(dir, 'hero.webp')).subarray(8, 12).toString()).toBe('WEBP')
  })
})
