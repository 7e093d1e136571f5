// Checks the exported ONNX files with onnxruntime-node against reference tensors written by train.py.
// Usage: node training/verify_onnx.cjs models/tiny-shapes [/tmp/tiny-shapes-verify]
const fs = require('fs')
const path = require('path')
const ort = require(path.resolve(__dirname, '../node_modules/onnxruntime-node'))

const dir = process.argv[2] || 'models/tiny-shapes'
const ref = process.argv[3] || '/tmp/tiny-shapes-verify'
const meta = JSON.parse(fs.readFileSync(path.join(ref, 'meta.json')))
const load = (k, T) => {
  const b = fs.readFileSync(path.join(ref, k + '.bin'))
  return new T(b.buffer, b.byteOffset, b.length / T.BYTES_PER_ELEMENT)
}
const t = (k, type, T) => new ort.Tensor(type, load(k, T), meta[k])
const maxDiff = (a, b) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

async function main() {
  let ok = true
  const check = (name, out, k) => {
    const exp = load(k, Float32Array)
    const d = maxDiff(out.data, exp)
    const good =
      out.data.length === exp.length &&
      JSON.stringify(out.dims) === JSON.stringify(meta[k]) &&
      d < 1e-3
    ok = ok && good
    console.log(
      `${name}: ${k} dims ${JSON.stringify(out.dims)} max|diff| ${d.toExponential(2)} ${good ? 'OK' : 'FAIL'}`,
    )
  }
  const te = await ort.InferenceSession.create(path.join(dir, 'text_encoder/model.onnx'))
  const r1 = await te.run({ input_ids: t('ids', 'int64', BigInt64Array) })
  check('text_encoder', r1.last_hidden_state, 'last_hidden_state')
  check('text_encoder', r1.pooler_output, 'pooler_output')
  const un = await ort.InferenceSession.create(path.join(dir, 'unet/model.onnx'))
  const base = {
    sample: t('sample', 'float32', Float32Array),
    timestep: t('timestep', 'float32', Float32Array),
    encoder_hidden_states: r1.last_hidden_state,
  }
  // ControlNet residual inputs (OnnxStack layout): zeros must give the plain text-to-image prediction
  const residuals = un.inputNames.filter((n) => n.endsWith('_additional_residual'))
  const zeros = {}
  for (const n of residuals)
    zeros[n] = new ort.Tensor('float32', new Float32Array(meta[n].reduce((a, b) => a * b)), meta[n])
  const r2 = await un.run({ ...base, ...zeros })
  check('unet', r2.out_sample, 'out_sample')
  const plainPath = path.join(ref, 'unet_plain.onnx')
  if (residuals.length && fs.existsSync(plainPath)) {
    const plain = await (await ort.InferenceSession.create(plainPath)).run(base)
    const d = maxDiff(r2.out_sample.data, plain.out_sample.data)
    ok = ok && d < 1e-5
    console.log(
      `unet: zero residuals vs the same UNet without residual inputs max|diff| ${d.toExponential(2)} ${d < 1e-5 ? 'OK' : 'FAIL'}`,
    )
  }
  if (fs.existsSync(path.join(dir, 'controlnet/model.onnx'))) {
    const cn = await ort.InferenceSession.create(path.join(dir, 'controlnet/model.onnx'))
    const rc = await cn.run({
      ...base,
      controlnet_cond: t('controlnet_cond', 'float32', Float32Array),
      conditioning_scale: new ort.Tensor('float64', Float64Array.from(meta.conditioning_scale), [
        1,
      ]),
    })
    for (const n of cn.outputNames) check('controlnet', rc[n], n)
    const fed = {}
    for (const n of cn.outputNames) fed[n] = rc[n]
    check('unet', (await un.run({ ...base, ...fed })).out_sample, 'out_sample_controlled')
  }
  if (fs.existsSync(path.join(dir, 'vae_encoder/model.onnx'))) {
    const ve = await ort.InferenceSession.create(path.join(dir, 'vae_encoder/model.onnx'))
    const re = await ve.run({ sample: t('image', 'float32', Float32Array) })
    check('vae_encoder', re.latent_parameters, 'latent_parameters')
  }
  const vd = await ort.InferenceSession.create(path.join(dir, 'vae_decoder/model.onnx'))
  const r3 = await vd.run({ latent_sample: t('sample', 'float32', Float32Array) })
  check('vae_decoder', r3.sample, 'decoded')
  console.log(ok ? 'ALL OK' : 'SOME FAILED')
  process.exit(ok ? 0 : 1)
}
main()
