// ONNX sampling loop for training/eval_onnx.py: DDIM (trailing, eta 0) with classifier-free guidance.
const fs = require('fs')
const path = require('path')
const ort = require(path.resolve(__dirname, '../node_modules/onnxruntime-node'))
const [dir, d] = process.argv.slice(2)
const meta = JSON.parse(fs.readFileSync(path.join(d, 'meta.json')))
const rd = (f, T) => {
  const b = fs.readFileSync(path.join(d, f))
  return new T(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
}

async function main() {
  const { n, window: W, sf, ts, ratio, ac } = meta
  const te = await ort.InferenceSession.create(path.join(dir, 'text_encoder/model.onnx'))
  const un = await ort.InferenceSession.create(path.join(dir, 'unet/model.onnx'))
  const vd = await ort.InferenceSession.create(path.join(dir, 'vae_decoder/model.onnx'))
  const ids = rd('ids.bin', BigInt64Array)
  const uids = rd('uids.bin', BigInt64Array)
  const both = new BigInt64Array(2 * n * W)
  both.set(uids)
  both.set(ids, n * W)
  const ctx = (await te.run({ input_ids: new ort.Tensor('int64', both, [2 * n, W]) }))
    .last_hidden_state
  const N = n * 64 * 4
  for (const g of meta.guidance) {
    const x = rd('noise.bin', Float32Array)
    for (const t of ts) {
      const inp = new Float32Array(2 * N)
      inp.set(x)
      inp.set(x, N)
      const e = (
        await un.run({
          sample: new ort.Tensor('float32', inp, [2 * n, 4, 8, 8]),
          timestep: new ort.Tensor('float32', new Float32Array([t]), [1]),
          encoder_hidden_states: ctx,
        })
      ).out_sample.data
      const a = ac[t]
      const ap = t - ratio >= 0 ? ac[t - ratio] : ac[0]
      for (let i = 0; i < N; i++) {
        const eps = e[i] + g * (e[N + i] - e[i])
        const x0 = (x[i] - Math.sqrt(1 - a) * eps) / Math.sqrt(a)
        x[i] = Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps
      }
    }
    for (let i = 0; i < N; i++) x[i] /= sf
    const img = (await vd.run({ latent_sample: new ort.Tensor('float32', x, [n, 4, 8, 8]) })).sample
      .data
    fs.writeFileSync(
      path.join(d, `images_${g}.bin`),
      Buffer.from(img.buffer, img.byteOffset, img.byteLength),
    )
  }
}
main()
