/**
 * Generates an image from a model folder on this machine (onnxruntime-node).
 *
 *   npm run generate -- --model models/tiny-shapes --prompt "a red circle" --seed 1 --output out.png
 *
 * With a picture: `--image IN.png --strength S` (image-to-image), plus `--mask MASK.png`
 * (inpainting: white is repainted), or `--control-image C.png [--control-scale S]
 * [--control-start A] [--control-end B]` (ControlNet). PNG or JPEG; the output has their size.
 *
 * `--format webp|jpeg [--quality Q]` writes that format instead, encoded from the PNG by the
 * API's own codecs (`src/images/variants.ts`); the PNG's generation parameters are not carried.
 *
 * A prompt over the text encoder's window is refused, as the API refuses it; `--truncate` cuts it.
 * With `--n N` the images are FILE-1.png … FILE-N.png, as `tti generate -n` names them.
 *
 * Exits 2 with a plain message on bad input (missing files, unknown scheduler, size not allowed).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { createNodeBackend } from '../src/gpu/ort-node'
import {
  isOriginal,
  OUTPUT_FORMAT_NAMES,
  OUTPUT_FORMATS,
  QUALITY_RANGE,
  type OutputFormat,
  type Variant,
} from '../src/images/formats'
import { decodePicture, luminance, type PictureField } from '../src/images/pictures'
import { encodeVariant, outputVariant } from '../src/images/variants'
import { folderSource } from '../src/node/folder-source'
import { ProblemError } from '../src/problem'
import { loadModel } from '../src/pipeline/model'
import { ModelLoadError } from '../src/pipeline/model-source'
import { encodePng, formatParameters } from '../src/pipeline/png'
import { SchedulerError } from '../src/pipeline/schedulers'
import { PipelineInputError, StableDiffusionPipeline } from '../src/pipeline/stable-diffusion'
import { PromptTooLongError } from '../src/pipeline/tokenizer'

const USAGE = `usage: npm run generate -- --model DIR --prompt TEXT [--negative-prompt TEXT] [--seed N]
  [--steps N] [--guidance X] [--scheduler NAME] [--scheduler-config JSON] [--width W] [--height H]
  [--n N] [--truncate] [--providers cpu|webgpu,cpu] [--output FILE.png] [--latents-output FILE.json]
  [--format png|webp|jpeg [--quality 0-100]]
  [--image IN.png --strength S [--mask MASK.png]]
  [--control-image C.png --control-scale S --control-start A --control-end B]`

class UsageError extends Error {}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v))
    throw new UsageError(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`)
  return Number(v)
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const x = Number(v)
  if (v.trim() === '' || !Number.isFinite(x))
    throw new UsageError(`--${name} must be a number, got ${JSON.stringify(v)}`)
  return x
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'negative-prompt': { type: 'string' },
      seed: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      scheduler: { type: 'string' },
      'scheduler-config': { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      n: { type: 'string' },
      truncate: { type: 'boolean' },
      providers: { type: 'string' },
      output: { type: 'string', default: 'out.png' },
      format: { type: 'string' },
      quality: { type: 'string' },
      'latents-output': { type: 'string' },
      image: { type: 'string' },
      strength: { type: 'string' },
      mask: { type: 'string' },
      'control-image': { type: 'string' },
      'control-scale': { type: 'string' },
      'control-start': { type: 'string' },
      'control-end': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  })
  if (values.help) {
    console.log(USAGE)
    return
  }
  if (!values.model) throw new UsageError('--model DIR is required')
  const output = outputOf(values.format, int('quality', values.quality))
  if (values.prompt === undefined) throw new UsageError('--prompt TEXT is required')
  let schedulerConfig: Record<string, unknown> | undefined
  if (values['scheduler-config']) {
    try {
      schedulerConfig = JSON.parse(values['scheduler-config'])
    } catch (e) {
      throw new UsageError(`--scheduler-config is not valid JSON: ${(e as Error).message}`)
    }
    if (
      typeof schedulerConfig !== 'object' ||
      schedulerConfig === null ||
      Array.isArray(schedulerConfig)
    )
      throw new UsageError('--scheduler-config must be a JSON object')
  }

  if (values.mask && !values.image) throw new UsageError('--mask needs --image')
  if (values.strength !== undefined && !values.image)
    throw new UsageError('--strength needs --image')
  for (const flag of ['control-scale', 'control-start', 'control-end'] as const)
    if (values[flag] !== undefined && !values['control-image'])
      throw new UsageError(`--${flag} needs --control-image`)
  const image = values.image ? await picture('image', values.image) : undefined
  const mask = values.mask ? await picture('mask', values.mask) : undefined
  const control = values['control-image']
    ? await picture('control_image', values['control-image'])
    : undefined

  const model = await loadModel(folderSource(values.model), createNodeBackend(values.providers))
  const pipe = new StableDiffusionPipeline(model)
  const seed = int('seed', values.seed) ?? Math.floor(Math.random() * 2 ** 32)
  const tty = process.stderr.isTTY
  const res = await pipe.generate(
    {
      prompt: values.prompt,
      negativePrompt: values['negative-prompt'],
      seed,
      steps: int('steps', values.steps),
      guidanceScale: num('guidance', values.guidance),
      scheduler: values.scheduler,
      schedulerConfig,
      width: int('width', values.width),
      height: int('height', values.height),
      numImages: int('n', values.n),
      truncate: values.truncate ?? false,
      image,
      mask: mask && { width: mask.width, height: mask.height, data: luminance(mask) },
      strength: num('strength', values.strength),
      controlImage: control,
      controlScale: num('control-scale', values['control-scale']),
      controlStart: num('control-start', values['control-start']),
      controlEnd: num('control-end', values['control-end']),
    },
    {
      onStep: ({ step, totalSteps }) => {
        if (!tty) return
        const w = 30
        const done = Math.round((step / totalSteps) * w)
        process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(w - done)}] ${step}/${totalSteps}`)
        if (step === totalSteps) process.stderr.write('\n')
      },
    },
  )
  const p = res.params
  for (const [i, image] of res.images.entries()) {
    const ext = OUTPUT_FORMATS[output.format].extension
    const file =
      res.images.length === 1
        ? values.output
        : values.output.replace(/(\.(png|webp|jpe?g))?$/i, `-${i + 1}.${ext}`)
    const png = encodePng(image, {
      parameters: formatParameters({
        ...p,
        seed: p.seed + i,
        model: values.model,
        modelDigest: model.spec.digest,
      }),
    })
    await writeFile(file, isOriginal(output) ? png : (await encodeVariant(png, output)).bytes)
    console.log(
      `${file} (seed ${p.seed + i}, ${p.width}x${p.height}, ${p.steps} steps, ${p.scheduler})`,
    )
  }
  if (values['latents-output']) {
    await writeFile(values['latents-output'], JSON.stringify(Array.from(res.latents)))
  }
}

/** The output variant of `--format` and `--quality`; a bad pair is a usage error. */
function outputOf(format: string | undefined, quality: number | undefined): Variant {
  if (format !== undefined && !(OUTPUT_FORMAT_NAMES as readonly string[]).includes(format))
    throw new UsageError(`--format must be one of ${OUTPUT_FORMAT_NAMES.join(', ')}`)
  if (quality !== undefined && quality > QUALITY_RANGE.max)
    throw new UsageError(`--quality must be between ${QUALITY_RANGE.min} and ${QUALITY_RANGE.max}`)
  const { variant, errors } = outputVariant(format as OutputFormat | undefined, quality)
  if (errors.length) throw new UsageError(`--quality ${errors[0].detail}`)
  return variant
}

/** Reads and decodes a picture file; a bad one is a usage error naming the flag. */
async function picture(field: PictureField, file: string) {
  const flag = `--${field.replace('_', '-')}`
  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(file))
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(e as Error).message}`)
  }
  try {
    const { rgb, width, height } = await decodePicture(field, bytes)
    return { width, height, data: rgb, rgb }
  } catch (e) {
    if (e instanceof ProblemError) throw new UsageError(`${flag} ${file}: ${e.detail}`)
    throw e
  }
}

main().catch((e: unknown) => {
  const known =
    e instanceof UsageError ||
    e instanceof ModelLoadError ||
    e instanceof SchedulerError ||
    e instanceof PipelineInputError ||
    e instanceof PromptTooLongError ||
    (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))
  // This command's own flag, where the API would advise its JSON field.
  const advice = e instanceof PromptTooLongError ? ' (pass --truncate to cut it)' : ''
  console.error(`error: ${(e as Error).message}${advice}`)
  if (e instanceof UsageError || (e as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS'))
    console.error(USAGE)
  if (!known) console.error((e as Error).stack)
  process.exit(known ? 2 : 1)
})
