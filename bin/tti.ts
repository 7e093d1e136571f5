/**
 * @module
 * `tti`: the command line of a deployed edge-tti API, built on `src/client`. Run it with
 * `npm run tti -- …`, `npx tti …` (the `bin/tti.mjs` shim) or `npx tsx bin/tti.ts …`.
 *
 * @example
 * TTI_URL=https://tti.example.com TTI_API_KEY=tti_… tti generate "a red circle" -o circle.png
 *
 * Exit codes are part of the interface: 0 ok, 2 usage or validation error, 3 authentication,
 * 4 rate limited, 5 server or generation failure (including an unreachable server).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import {
  BATCH_MAX_ITEMS,
  TtiApiError,
  TtiClient,
  type BatchItemParams,
  type CreateKeyParams,
  type BatchResult,
  type GenerateParams,
  type OutputFormat,
  type PictureInput,
  type Problem,
  OUTPUT_FORMAT_NAMES,
  OUTPUT_FORMATS,
} from '../src/client/index'
import { pictureHtml } from '../src/embeds/picture'
import { adminToken as localAdminToken } from '../scripts/dev-vars'

/** Exit statuses scripts can rely on. */
const EXIT = Object.freeze({ ok: 0, usage: 2, auth: 3, rateLimited: 4, server: 5 })

const USAGE = `usage: tti <command> [options]

commands:
  generate <prompt> -o <file.png>   generate an image (-o - writes the PNG to stdout)
  edit <picture> <prompt> -o <file.png> [--mask M.png] [--strength S]
                                    repaint a picture (a file, a sha256 or an image URL);
                                    with --mask only its white area
  embed-url <prompt> --seed N       print a signed URL for <img src> (viewing it needs no key)
  prebuild <prompts.json> [-o urls.json] [--html]
                                    generate every prompt; write {id: permanent URL}
                                    (--html: {id: <picture> markup with srcset widths})
  models                            list the models the API serves
  keys create [--name N] [--scopes generate,read] [--burst B --period S]
  keys list
  keys revoke <id>

generate options:
  -o, --output FILE     where to write the image; with -n > 1, FILE-1.png, FILE-2.png, …
  --format F            png (default), webp or jpeg: the file written and the URLs printed
                        (the stored original stays the PNG; others are encoded from it)
  --quality Q           webp or jpeg encoder quality 0-100 (output_compression; 100 best)
  --negative TEXT       negative prompt
  --seed N              seed (random when omitted; printed either way)
  --steps N             denoising steps
  --guidance X          guidance scale
  --size WxH            image size, e.g. 64x64
  --scheduler NAME      e.g. ddim, euler, dpmpp_2m (see tti models)
  --model ID            model id (default: the first served model)
  -n N                  number of images
  --truncate            cut an over-long prompt instead of failing
  --json                print the API's JSON answer instead of one URL per line
  --[no-]progress       show a progress bar of denoising steps, streamed from the server
                        (default: when stderr is a terminal)

edit options: those of generate (the picture sets the size), plus
  --mask FILE           inpainting mask: white is repainted, black kept
  --strength S          how far the picture is noised, in (0, 1] (default 0.8, 1 with --mask)

embed-url options: those of generate except -n and -o, plus
  --expires-in D        the URL stops working after D: 3600, 90m, 12h or 30d (default: never)
  --origin ORIGIN       a page origin allowed to show it, e.g. https://blog.example (repeatable;
                        default: any page)
  --html                print an <img> element instead of the URL (with --format webp, a
                        <picture> with srcset widths)

prebuild: prompts.json is an array of prompts (strings, keyed by themselves, or objects with
the POST /v1/images fields and an optional "id") or an object {"id": prompt or object}. The
generate options set defaults for every item. Writes {"id": "url"} to -o (default stdout);
--json writes the API's whole answer; --html writes {"id": "<picture>…"}: a WebP <source> and
an <img> (PNG, or --format jpeg), each with srcset widths up to the image's. Give seeds: a
rebuild is then all cache hits.

connection (flags override the environment):
  --url URL             TTI_URL (default http://localhost:8787)
  --key KEY             TTI_API_KEY (generate, edit, embed-url, prebuild, models)
  --admin-token TOKEN   TTI_ADMIN_TOKEN (keys); without either, ADMIN_TOKEN from the
                        environment or ./.dev.vars, as npm run keys reads it

exit codes: 0 ok, 2 usage/validation, 3 authentication, 4 rate limited, 5 server failure`

/** A mistake in the command line: exit 2 with a plain message. */
class UsageError extends Error {}

/** A missing credential: exit 3 before anything is sent. */
class AuthError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    allowNegative: true,
    options: {
      output: { type: 'string', short: 'o' },
      negative: { type: 'string' },
      seed: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      size: { type: 'string' },
      scheduler: { type: 'string' },
      model: { type: 'string' },
      n: { type: 'string', short: 'n' },
      truncate: { type: 'boolean' },
      json: { type: 'boolean' },
      progress: { type: 'boolean' },
      url: { type: 'string' },
      key: { type: 'string' },
      'admin-token': { type: 'string' },
      'expires-in': { type: 'string' },
      origin: { type: 'string', multiple: true },
      html: { type: 'boolean' },
      format: { type: 'string' },
      quality: { type: 'string' },
      name: { type: 'string' },
      scopes: { type: 'string' },
      burst: { type: 'string' },
      period: { type: 'string' },
      mask: { type: 'string' },
      strength: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const [command, ...args] = positionals
  if (v.help || !command) {
    console.log(USAGE)
    return v.help ? EXIT.ok : EXIT.usage
  }
  const baseUrl = v.url ?? process.env.TTI_URL ?? 'http://localhost:8787'
  if (!/^https?:\/\//.test(baseUrl))
    throw new UsageError(`--url must be http(s)://…, got ${baseUrl}`)
  const apiKey = v.key ?? process.env.TTI_API_KEY
  // The local server's own token (./.dev.vars) last, looked up as npm run keys does, for keys only.
  const adminToken =
    v['admin-token'] ??
    process.env.TTI_ADMIN_TOKEN ??
    (command === 'keys' ? localToken() : undefined)
  const client = new TtiClient({ baseUrl, apiKey, adminToken })
  const needKey = () => {
    if (!apiKey) throw new AuthError('no API key: set TTI_API_KEY or pass --key')
  }
  const needAdmin = () => {
    if (!adminToken)
      throw new AuthError(
        'no admin token: set TTI_ADMIN_TOKEN, pass --admin-token, or run where .dev.vars has ADMIN_TOKEN',
      )
  }

  switch (command) {
    case 'generate':
    case 'edit': {
      const edit = command === 'edit'
      if (args.length !== (edit ? 2 : 1) || !args[args.length - 1].trim()) {
        throw new UsageError(
          edit
            ? 'edit takes a picture and one prompt argument (quote it)'
            : 'generate takes one prompt argument (quote it)',
        )
      }
      if (!v.output) throw new UsageError(`${command} needs -o FILE.png (or -o - for stdout)`)
      if (!edit && (v.mask !== undefined || v.strength !== undefined))
        throw new UsageError('--mask and --strength belong to tti edit')
      const params = generateParams(args[args.length - 1], v)
      if (edit) {
        params.image = await pictureArg('picture', args[0])
        if (typeof v.mask === 'string') params.mask = await pictureArg('--mask', v.mask)
        if (typeof v.strength === 'string') {
          const s = Number(v.strength)
          if (!v.strength.trim() || !Number.isFinite(s))
            throw new UsageError(`--strength must be a number, got "${v.strength}"`)
          params.strength = s
        }
      }
      if (v.output === '-' && (params.n ?? 1) > 1) {
        throw new UsageError('-o - writes one image; use a file name with -n > 1')
      }
      needKey()
      const showProgress = v.progress ?? Boolean(process.stderr.isTTY)
      const steps: ProgressSteps = {}
      const stop = progress(showProgress, steps)
      let result
      let files: string[]
      try {
        // Streamed only when someone watches: steps feed the bar (SSE), else one JSON answer.
        result = await client.generate(params, {
          onProgress: showProgress ? (p) => Object.assign(steps, p) : undefined,
        })
        const variant = { format: params.output_format, quality: params.output_compression }
        const bytes = await Promise.all(
          result.images.map((img) => client.image(img.sha256, variant)),
        )
        files = await writeImages(v.output, bytes, params.output_format ?? 'png')
      } finally {
        stop()
      }
      if (v.json) console.log(JSON.stringify({ ...result, files }, null, 2))
      else if (v.output !== '-') for (const img of result.images) console.log(img.url)
      for (const [i, img] of result.images.entries()) {
        console.error(
          `${files[i]}: ${img.width}x${img.height}, seed ${img.seed}${result.cached ? ', cached' : ''}`,
        )
      }
      return EXIT.ok
    }
    case 'embed-url': {
      if (args.length !== 1 || !args[0].trim()) {
        throw new UsageError('embed-url takes one prompt argument (quote it)')
      }
      const {
        n,
        seed,
        image: _i,
        mask: _m,
        control_image: _c,
        ...params
      } = generateParams(args[0], v)
      if (n !== undefined) throw new UsageError('an embed URL names one image: drop -n')
      if (seed === undefined)
        throw new UsageError('embed-url needs --seed N (a URL names one image)')
      needKey()
      const embed = await client.createEmbed({
        ...params,
        seed,
        ...(v['expires-in'] ? { expires_in: duration(v['expires-in']) } : {}),
        ...(v.origin?.length ? { origins: v.origin } : {}),
      })
      const html = params.output_format === 'webp' ? embed.picture : embed.html
      console.log(v.json ? JSON.stringify(embed, null, 2) : v.html ? html : embed.url)
      return EXIT.ok
    }
    case 'prebuild': {
      if (args.length !== 1) throw new UsageError('prebuild takes one file: prebuild prompts.json')
      const { prompt: _prompt, ...defaults } = generateParams('', v)
      let text: string
      try {
        text = await readFile(args[0], 'utf8')
      } catch (e) {
        throw new UsageError(`cannot read ${args[0]}: ${(e as Error).message}`)
      }
      const items = prebuildItems(text, defaults, args[0])
      needKey()
      const stop = progress(v.progress ?? Boolean(process.stderr.isTTY))
      const result: BatchResult = { images: {}, errors: {} }
      try {
        // One request per BATCH_MAX_ITEMS items; ids are global, so chunks cannot collide.
        for (let i = 0; i < items.length; i += BATCH_MAX_ITEMS) {
          const part = await client.batch(items.slice(i, i + BATCH_MAX_ITEMS))
          Object.assign(result.images, part.images)
          Object.assign(result.errors, part.errors)
        }
      } finally {
        stop()
      }
      const urls = Object.fromEntries(
        items
          .filter((it) => result.images[it.id!])
          .map((it) => {
            const img = result.images[it.id!]
            if (!v.html) return [it.id!, img.url]
            const picture = pictureHtml({
              url: (variant) => client.imageUrl(img.sha256, variant),
              width: img.width,
              height: img.height,
              alt: it.prompt ?? '',
              fallback: it.output_format,
              quality: it.output_compression,
            })
            return [it.id!, picture]
          }),
      )
      const out = JSON.stringify(v.json ? result : urls, null, 2) + '\n'
      // Written even when some items failed: a rerun finds the others in the cache for free.
      if (!v.output || v.output === '-') process.stdout.write(out)
      else await writeFile(v.output, out)
      const generated = Object.values(result.images).filter((img) => !img.cached).length
      console.error(
        `${Object.keys(urls).length} of ${items.length} images (${generated} generated)${v.output && v.output !== '-' ? ` → ${v.output}` : ''}`,
      )
      const failed = Object.entries(result.errors)
      for (const [id, problem] of failed) {
        console.error(
          `tti: ${id}: ${problem.detail ? `${problem.title}: ${problem.detail}` : problem.title}`,
        )
      }
      if (failed.length === 0) return EXIT.ok
      // The exit status of the first failure, as if that item had been its own request.
      return failure(new TtiApiError(failed[0][1] as Problem)).code
    }
    case 'models': {
      needKey()
      const models = await client.models()
      if (v.json) {
        console.log(JSON.stringify(models, null, 2))
        return EXIT.ok
      }
      for (const m of models) {
        const { defaults: d, limits: l } = m
        console.log(
          `${m.id}  default ${d.width}x${d.height}, ${d.steps} steps, guidance ${d.guidance_scale}, ${d.scheduler}`,
        )
        console.log(
          `  up to ${l.max_width}x${l.max_height} (multiples of ${l.size_multiple}), steps ${l.min_steps}-${l.max_steps}, guidance ${l.min_guidance_scale}-${l.max_guidance_scale}, ${l.max_images} images, ${m.max_prompt_tokens} prompt tokens`,
        )
        console.log(`  schedulers: ${m.schedulers.join(', ')}`)
      }
      return EXIT.ok
    }
    case 'keys': {
      const [sub, id] = args
      let out: unknown
      if (sub === 'create' && !id) {
        needAdmin()
        out = await client.createKey({
          ...(v.name ? { name: v.name } : {}),
          // Unknown scopes go to the server as typed, which names them in its 422.
          ...(v.scopes
            ? { scopes: v.scopes.split(',').map((s) => s.trim()) as CreateKeyParams['scopes'] }
            : {}),
          ...(v.burst || v.period
            ? {
                rate_limit: {
                  burst: integer('--burst', v.burst ?? '30'),
                  period_seconds: integer('--period', v.period ?? '60'),
                },
              }
            : {}),
        })
      } else if (sub === 'list' && !id) {
        needAdmin()
        out = { keys: await client.listKeys() }
      } else if (sub === 'revoke' && id && args.length === 2) {
        needAdmin()
        out = await client.revokeKey(id)
      } else {
        throw new UsageError('keys takes: create [--name N] [--scopes S] | list | revoke <id>')
      }
      console.log(JSON.stringify(out, null, 2))
      return EXIT.ok
    }
    default:
      throw new UsageError(`unknown command "${command}" (try tti --help)`)
  }
}

/** `ADMIN_TOKEN` from the environment or `./.dev.vars`, if either has one. */
function localToken(): string | undefined {
  try {
    return localAdminToken()
  } catch {
    return undefined
  }
}

/** Builds the request body from the flags; format errors are usage errors, bounds the server's. */
function generateParams(
  prompt: string,
  v: Record<string, string | string[] | boolean | undefined>,
) {
  const params: GenerateParams = { prompt }
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined)
  if (str('negative') !== undefined) params.negative_prompt = str('negative')
  if (str('seed') !== undefined) params.seed = integer('--seed', str('seed')!)
  if (str('steps') !== undefined) params.steps = integer('--steps', str('steps')!)
  if (str('n') !== undefined) params.n = integer('-n', str('n')!)
  if (str('guidance') !== undefined) {
    const g = Number(str('guidance'))
    if (!str('guidance')!.trim() || !Number.isFinite(g)) {
      throw new UsageError(`--guidance must be a number, got "${str('guidance')}"`)
    }
    params.guidance_scale = g
  }
  if (str('size') !== undefined) {
    const m = str('size')!.match(/^(\d+)x(\d+)$/i)
    if (!m) throw new UsageError(`--size must look like 64x64, got "${str('size')}"`)
    params.width = Number(m[1])
    params.height = Number(m[2])
  }
  if (str('scheduler') !== undefined) params.scheduler = str('scheduler')
  if (str('model') !== undefined) params.model = str('model')
  if (v.truncate) params.truncate = true
  if (str('format') !== undefined) {
    const f = str('format')!
    if (!(OUTPUT_FORMAT_NAMES as readonly string[]).includes(f))
      throw new UsageError(`--format must be one of ${OUTPUT_FORMAT_NAMES.join(', ')}, got "${f}"`)
    params.output_format = f as OutputFormat
  }
  if (str('quality') !== undefined)
    params.output_compression = integer('--quality', str('quality')!)
  return params
}

/** A picture argument: a stored image's sha256 or URL as it is, else the file's bytes. */
async function pictureArg(what: string, arg: string): Promise<PictureInput> {
  if (/^[0-9a-f]{64}$/i.test(arg) || /^https?:\/\//.test(arg)) return arg
  try {
    return new Uint8Array(await readFile(arg))
  } catch (e) {
    throw new UsageError(`${what}: cannot read ${arg}: ${(e as Error).message}`)
  }
}

/** Reads a prompts file into batch items, each with its global id. */
function prebuildItems(
  text: string,
  defaults: Omit<GenerateParams, 'prompt'>,
  file: string,
): BatchItemParams[] {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new UsageError(`${file} is not JSON: ${(e as Error).message}`)
  }
  const isObject = (x: unknown): x is Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x)
  let entries: [string | undefined, unknown][]
  if (Array.isArray(json)) entries = json.map((x) => [undefined, x])
  else if (isObject(json)) entries = Object.entries(json)
  else throw new UsageError(`${file} must hold an array of prompts or an object of id → prompt`)
  if (entries.length === 0) throw new UsageError(`${file} holds no prompts`)

  const seen = new Set<string>()
  return entries.map(([key, x], i) => {
    if (typeof x !== 'string' && !isObject(x)) {
      throw new UsageError(`${file}: item ${key ?? i} must be a prompt or an object`)
    }
    const item = typeof x === 'string' ? { prompt: x } : x
    // A bare string is its own id (look images up by prompt); an object its id, else its index.
    const id =
      key ?? (typeof item.id === 'string' ? item.id : typeof x === 'string' ? x : String(i))
    if (seen.has(id)) throw new UsageError(`${file}: id "${id}" appears twice`)
    seen.add(id)
    return { ...defaults, ...item, id } as BatchItemParams
  })
}

/** Seconds of `3600`, `90m`, `12h` or `30d`. */
function duration(text: string): number {
  const m = text.trim().match(/^(\d+)([smhd]?)$/)
  if (!m) throw new UsageError(`--expires-in must look like 3600, 90m, 12h or 30d, got "${text}"`)
  return (
    Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
  )
}

function integer(flag: string, text: string): number {
  if (!/^-?\d+$/.test(text.trim()))
    throw new UsageError(`${flag} must be an integer, got "${text}"`)
  return Number(text)
}

/**
 * Writes the images: `out` itself for one image, `out-1.png`… (the format's extension) for
 * several, stdout for `-`.
 */
async function writeImages(
  out: string,
  images: Uint8Array[],
  format: OutputFormat,
): Promise<string[]> {
  if (out === '-') {
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(images[0], (e) => (e ? reject(e) : resolve())),
    )
    return ['(stdout)']
  }
  const ext = OUTPUT_FORMATS[format].extension
  const files =
    images.length === 1
      ? [out]
      : images.map((_, i) => out.replace(/(\.(png|webp|jpe?g))?$/i, `-${i + 1}.${ext}`))
  await Promise.all(files.map((f, i) => writeFile(f, images[i])))
  return files
}

/** Steps of a streamed generation, filled in as they arrive (empty until the first). */
interface ProgressSteps {
  step?: number
  total_steps?: number
}

/**
 * A progress line on stderr: a spinner with elapsed time, and a bar of denoising steps once
 * `steps` has them (a streamed generation); returns its stop function.
 */
function progress(enabled: boolean, steps: ProgressSteps = {}): () => void {
  if (!enabled) return () => {}
  const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'
  const width = 24
  const t0 = Date.now()
  let i = 0
  const draw = () => {
    const { step, total_steps: total } = steps
    const bar =
      step !== undefined && total
        ? ` [${'#'.repeat(Math.round((step / total) * width)).padEnd(width, '.')}] ${step}/${total} steps`
        : ''
    process.stderr.write(
      `\r${frames[i++ % frames.length]} generating…${bar} ${((Date.now() - t0) / 1000).toFixed(1)}s`,
    )
  }
  draw()
  const timer = setInterval(draw, 100)
  return () => {
    clearInterval(timer)
    draw() // so a captured stderr ends with the final state (e.g. 20/20 steps)
    process.stderr.write('\r\x1b[K')
  }
}

/** Maps an error to its message and exit status. */
function failure(e: unknown): { message: string; code: number } {
  if (e instanceof UsageError) return { message: e.message, code: EXIT.usage }
  if (e instanceof AuthError) return { message: e.message, code: EXIT.auth }
  // parseArgs rejects unknown flags and missing values with these codes.
  const code = (e as { code?: string })?.code
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    return { message: `${(e as Error).message} (try tti --help)`, code: EXIT.usage }
  }
  if (e instanceof TtiApiError) {
    const what = e.detail ?? e.problem.title
    if (e.status === 401 || e.status === 403) return { message: what, code: EXIT.auth }
    if (e.status === 429) {
      const wait = e.retryAfter === undefined ? '' : ` (retry in ${e.retryAfter} s)`
      return { message: `rate limited: ${what}${wait}`, code: EXIT.rateLimited }
    }
    if (e.status >= 500) return { message: `server error ${e.status}: ${what}`, code: EXIT.server }
    // The API's detail advises its JSON field; here the advice is this command's own flag.
    if (e.slug === 'prompt-too-long' && typeof e.problem.tokens === 'number') {
      const field = e.problem.field === 'negative_prompt' ? '--negative' : 'the prompt'
      return {
        message: `${e.problem.title}: ${field} has ${e.problem.tokens} tokens; the model takes ${e.problem.limit} (pass --truncate to cut it, or shorten it)`,
        code: EXIT.usage,
      }
    }
    const message = e.detail ? `${e.problem.title}: ${e.detail}` : e.problem.title
    return { message, code: EXIT.usage }
  }
  // fetch rejects with a TypeError when the server cannot be reached.
  const cause = (e as { cause?: { message?: string } })?.cause?.message
  return {
    message: `${e instanceof Error ? e.message : String(e)}${cause ? ` (${cause})` : ''}`,
    code: EXIT.server,
  }
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (e) {
  const { message, code } = failure(e)
  console.error(`tti: ${message}`)
  process.exitCode = code
}
