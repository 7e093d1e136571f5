#!/usr/bin/env node
/**
 * @module
 * Raw onnxruntime-node baseline for an optimum-layout Stable Diffusion folder (as written by
 * `training/build_sd_random.py`): loads each component FROM ITS FILE PATH (so ORT maps
 * `model.onnx_data` itself), prints the I/O signature, then runs what txt2img runs — the text
 * encoder on two padded 77-token rows, the UNet `--steps` times at batch 2 (classifier-free
 * guidance), the VAE decoder once — and prints one JSON line of timings and peak RSS.
 *
 *   node training/check_export.mjs /work/fullsize/sd-turbo-fp32 --size 512 --steps 2
 *
 * Options: --size 256|512 (image side; latents are size/8), --steps N (UNet runs, default 1),
 * --threads N (intra-op threads, default ORT's), --encoder (also load and run vae_encoder once),
 * --components a,b (subset of text_encoder,unet,vae_decoder,vae_encoder to load and run).
 * NOTE: no pipeline code here on purpose; this is the number the service is compared against.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import ort from 'onnxruntime-node'

function parseArgs(argv) {
  const o = {
    dir: null,
    size: 512,
    steps: 1,
    threads: 0,
    encoder: false,
    components: null,
    providers: ['cpu'],
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--size') o.size = Number(argv[++i])
    else if (a === '--steps') o.steps = Number(argv[++i])
    else if (a === '--threads') o.threads = Number(argv[++i])
    else if (a === '--encoder') o.encoder = true
    else if (a === '--components') o.components = argv[++i].split(',')
    else if (a === '--providers') o.providers = argv[++i].split(',')
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`)
    else o.dir = resolve(a)
  }
  if (!o.dir) throw new Error('usage: check_export.mjs MODEL_DIR [--size 256|512] [--steps N]')
  if (!(o.size > 0 && o.size % 64 === 0))
    throw new Error('--size must be a positive multiple of 64')
  if (!(o.steps >= 0)) throw new Error('--steps must be >= 0')
  o.components ??= ['text_encoder', 'unet', 'vae_decoder', ...(o.encoder ? ['vae_encoder'] : [])]
  return o
}

// float32 <-> IEEE half bits (Node 20 has no Float16Array).
const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)
function toHalf(x) {
  f32[0] = x
  const b = u32[0]
  const sign = (b >>> 16) & 0x8000
  const exp = ((b >>> 23) & 0xff) - 127 + 15
  let mant = b & 0x7fffff
  if (exp >= 0x1f) return sign | 0x7c00 | (((b >>> 23) & 0xff) === 0xff && mant ? 0x200 : 0)
  if (exp <= 0) {
    if (exp < -10) return sign
    mant |= 0x800000
    const shift = 14 - exp
    return sign | ((mant + (1 << (shift - 1))) >>> shift)
  }
  return (sign | (exp << 10) | (mant >>> 13)) + ((mant >>> 12) & 1)
}
function fromHalf(h) {
  const s = h & 0x8000 ? -1 : 1
  const e = (h >>> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) return s * m * 2 ** -24
  if (e === 0x1f) return m ? NaN : s * Infinity
  return s * (1 + m / 1024) * 2 ** (e - 15)
}

/** Deterministic standard normals (xorshift32 + Box-Muller). */
function randn(n, seed = 1) {
  let x = seed >>> 0 || 1
  const u = () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return (x + 0.5) / 4294967296
  }
  const out = new Float32Array(n)
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()))
    const t = 2 * Math.PI * u()
    out[i] = r * Math.cos(t)
    if (i + 1 < n) out[i + 1] = r * Math.sin(t)
  }
  return out
}

function floatTensor(type, values, dims) {
  if (type === 'float16') return new ort.Tensor('float16', Uint16Array.from(values, toHalf), dims)
  if (type === 'float32') return new ort.Tensor('float32', Float32Array.from(values), dims)
  throw new Error(`expected a float input, got ${type}`)
}

function stats(t) {
  const n = t.data.length
  let finite = true
  let sum = 0
  let sq = 0
  for (let i = 0; i < n; i++) {
    const v = t.type === 'float16' ? fromHalf(t.data[i]) : Number(t.data[i])
    if (!Number.isFinite(v)) {
      finite = false
      continue
    }
    sum += v
    sq += v * v
  }
  const mean = sum / n
  return {
    finite,
    mean: +mean.toPrecision(4),
    std: +Math.sqrt(Math.max(0, sq / n - mean * mean)).toPrecision(4),
  }
}

const meta = (m) => `${m.name} ${m.type} [${(m.shape ?? []).join(', ')}]`
const rssMb = () => Math.round(process.resourceUsage().maxRSS / 1024)

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const opts = { executionProviders: o.providers, logSeverityLevel: 3 }
  if (o.threads) opts.intraOpNumThreads = o.threads
  const tokCfg = JSON.parse(readFileSync(join(o.dir, 'tokenizer', 'tokenizer_config.json'), 'utf8'))
  const padId = tokCfg.pad_token === '!' ? 0 : 49407 // SD 2.x pads with "!" (id 0)

  const sessions = {}
  const loadMs = {}
  for (const name of o.components) {
    const path = join(o.dir, name, 'model.onnx')
    const ext = existsSync(join(o.dir, name, 'model.onnx_data')) ? ' (+ model.onnx_data)' : ''
    const t0 = performance.now()
    sessions[name] = await ort.InferenceSession.create(path, opts)
    loadMs[name] = Math.round(performance.now() - t0)
    const s = sessions[name]
    console.log(`${name}: loaded ${path}${ext} in ${loadMs[name]} ms, peak RSS ${rssMb()} MB`)
    for (const m of s.inputMetadata) console.log(`  in  ${meta(m)}`)
    for (const m of s.outputMetadata) console.log(`  out ${meta(m)}`)
  }

  const result = { model: o.dir, size: o.size, steps: o.steps, load_ms: loadMs }
  const h = o.size / 8
  let context = null

  if (sessions.text_encoder) {
    const s = sessions.text_encoder
    const idsMeta = s.inputMetadata[0]
    // Row 0: "<bos> a photo of a cat <eos> <pad>…"; row 1: the empty negative prompt.
    const rows = [
      [49406, 320, 1125, 539, 320, 2368, 49407],
      [49406, 49407],
    ]
    const ids = rows.flatMap((r) => [...r, ...Array(77 - r.length).fill(padId)])
    const input =
      idsMeta.type === 'int32'
        ? new ort.Tensor('int32', Int32Array.from(ids), [2, 77])
        : new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [2, 77])
    const t0 = performance.now()
    const out = await s.run({ [idsMeta.name]: input })
    result.text_ms = Math.round(performance.now() - t0)
    context = out.last_hidden_state
    console.log(
      `text_encoder: ${result.text_ms} ms; last_hidden_state [${context.dims}] ${JSON.stringify(stats(context))}` +
        `; pooler_output [${out.pooler_output.dims}] ${JSON.stringify(stats(out.pooler_output))}`,
    )
    result.text_finite = stats(context).finite && stats(out.pooler_output).finite
  }

  if (sessions.unet) {
    const s = sessions.unet
    const byName = Object.fromEntries(s.inputMetadata.map((m) => [m.name, m]))
    const ehs = byName.encoder_hidden_states
    if (!context || context.type !== ehs.type) {
      const dim = Number(ehs.shape[2])
      context = floatTensor(ehs.type, randn(2 * 77 * dim, 7), [2, 77, dim])
    }
    const ts = byName.timestep
    const tsDims = ts.shape.length === 0 ? [] : [1]
    const tsTensor = ts.type.startsWith('float')
      ? floatTensor(ts.type, [999], tsDims)
      : ts.type === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from([999n]), tsDims)
        : new ort.Tensor('int32', Int32Array.from([999]), tsDims)
    const sample = floatTensor(byName.sample.type, randn(2 * 4 * h * h, 3), [2, 4, h, h])
    result.unet_ms = []
    let out
    for (let i = 0; i < o.steps; i++) {
      const t0 = performance.now()
      out = await s.run({ sample, timestep: tsTensor, encoder_hidden_states: context })
      result.unet_ms.push(Math.round(performance.now() - t0))
      console.log(`unet step ${i + 1}/${o.steps}: ${result.unet_ms[i]} ms, peak RSS ${rssMb()} MB`)
    }
    if (out) {
      const st = stats(out.out_sample)
      console.log(`unet: out_sample [${out.out_sample.dims}] ${JSON.stringify(st)}`)
      result.unet_finite = st.finite
      result.unet_ms_mean = Math.round(
        result.unet_ms.reduce((a, b) => a + b, 0) / result.unet_ms.length,
      )
    }
  }

  if (sessions.vae_decoder) {
    const s = sessions.vae_decoder
    const m = s.inputMetadata[0]
    const latents = floatTensor(m.type, randn(4 * h * h, 5), [1, 4, h, h])
    const t0 = performance.now()
    const out = await s.run({ [m.name]: latents })
    result.vae_ms = Math.round(performance.now() - t0)
    const st = stats(out.sample)
    console.log(
      `vae_decoder: ${result.vae_ms} ms; sample [${out.sample.dims}] ${JSON.stringify(st)}`,
    )
    result.vae_finite = st.finite
  }

  if (sessions.vae_encoder) {
    const s = sessions.vae_encoder
    const m = s.inputMetadata[0]
    const image = floatTensor(m.type, randn(3 * o.size * o.size, 9), [1, 3, o.size, o.size])
    const t0 = performance.now()
    const out = await s.run({ [m.name]: image })
    result.vae_encoder_ms = Math.round(performance.now() - t0)
    const st = stats(out.latent_parameters)
    console.log(
      `vae_encoder: ${result.vae_encoder_ms} ms; latent_parameters [${out.latent_parameters.dims}] ${JSON.stringify(st)}`,
    )
    result.vae_encoder_finite = st.finite
  }

  result.peak_rss_mb = rssMb()
  console.log(JSON.stringify(result))
  for (const s of Object.values(sessions)) await s.release()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
