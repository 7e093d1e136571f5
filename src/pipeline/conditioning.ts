/**
 * @module
 * The pure pieces of the image conditioners, each as diffusers computes it: picture
 * preprocessing (`VaeImageProcessor`), the mask processor, sampling the VAE posterior
 * (`DiagonalGaussianDistribution`), `strength` → timesteps (`get_timesteps`) and the ControlNet
 * guidance window (`controlnet_keep`). Float32 throughout, like the reference.
 */
import type { GrayImage, RgbImage } from './image'
import type { Scheduler } from './schedulers'
import type { NoiseGenerator } from './schedulers/types'

const f = Math.fround

/**
 * `VaeImageProcessor.preprocess` for an init image: u8 / 255 in float32, then 2x − 1 (to [−1, 1]),
 * HWC → NCHW `[1, 3, H, W]`.
 */
export function imageToVaeInput(image: RgbImage): Float32Array {
  return rgbToPlanes(image, (u) => f(f(f(u / 255) * 2) - 1))
}

/**
 * `VaeImageProcessor.preprocess` with `do_normalize=False`, as the ControlNet pipeline prepares
 * its control picture: u8 / 255 in [0, 1], NCHW `[1, 3, H, W]`.
 */
export function imageToControlInput(image: RgbImage): Float32Array {
  return rgbToPlanes(image, (u) => f(u / 255))
}

function rgbToPlanes(image: RgbImage, map: (u: number) => number): Float32Array {
  const plane = image.width * image.height
  const out = new Float32Array(3 * plane)
  const table = Float32Array.from({ length: 256 }, (_, u) => map(u))
  for (let p = 0; p < plane; p++)
    for (let c = 0; c < 3; c++) out[c * plane + p] = table[image.data[p * 3 + c]]
  return out
}

/**
 * The mask processor (`do_binarize`): u8 / 255, then < 0.5 → 0 and ≥ 0.5 → 1, i.e. 1 where the
 * byte is ≥ 128. 1 marks the region to repaint. Shape `[H, W]`.
 */
export function binarizeMask(mask: GrayImage): Uint8Array {
  const out = new Uint8Array(mask.data.length)
  for (let k = 0; k < out.length; k++) out[k] = f(mask.data[k] / 255) >= 0.5 ? 1 : 0
  return out
}

/**
 * `F.interpolate(mask, size=(H/s, W/s))` in its default `nearest` mode: latent pixel (i, j) takes
 * mask pixel (⌊i·s⌋, ⌊j·s⌋) for an integer scale s.
 */
export function downsampleMask(mask: Uint8Array, width: number, height: number, scale: number) {
  const w = width / scale
  const h = height / scale
  const out = new Float32Array(w * h)
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++) out[i * w + j] = mask[i * scale * width + j * scale]
  return out
}

/**
 * The init image with the region to repaint set to 0 (`init_image * (mask < 0.5)`), as the
 * 9-channel inpainting UNet sees it through the VAE.
 */
export function maskedVaeInput(vaeInput: Float32Array, mask: Uint8Array): Float32Array {
  const plane = mask.length
  const out = new Float32Array(vaeInput.length)
  for (let c = 0; c < 3; c++)
    for (let p = 0; p < plane; p++) out[c * plane + p] = mask[p] ? 0 : vaeInput[c * plane + p]
  return out
}

/**
 * A sample of the VAE posterior, × `scalingFactor`: `DiagonalGaussianDistribution.sample` on
 * `latent_parameters` = cat(mean, logvar) with logvar clamped to [−30, 20], std = exp(logvar / 2),
 * then mean + std·ε with ε drawn from `generator` (Kingma & Welling 2014, eq. 10).
 */
export function samplePosterior(
  parameters: Float32Array,
  shape: readonly number[],
  scalingFactor: number,
  generator: NoiseGenerator,
): Float32Array {
  const numel = parameters.length / 2
  const eps = generator.randn(shape)
  const sf = f(scalingFactor)
  const out = new Float32Array(numel)
  for (let k = 0; k < numel; k++) {
    const logvar = Math.min(20, Math.max(-30, parameters[numel + k]))
    const std = f(Math.exp(f(0.5 * logvar)))
    out[k] = f(sf * f(parameters[k] + f(std * eps[k])))
  }
  return out
}

/**
 * diffusers' `get_timesteps`: with `strength` s of N steps, ⌊N·s⌋ (in double, capped at N) are
 * run, from index `(N − that)·order` of the scheduler's timesteps; schedulers with
 * `set_begin_index` are told where the loop starts. Returns the timesteps to run.
 */
export function timestepsForStrength(
  scheduler: Scheduler,
  steps: number,
  strength: number,
): number[] {
  const initTimestep = Math.min(Math.floor(steps * strength), steps)
  const tStart = Math.max(steps - initTimestep, 0)
  const start = tStart * scheduler.order
  scheduler.setBeginIndex?.(start)
  return scheduler.timesteps.slice(start)
}

/**
 * `controlnet_keep`: 1 for step i of n when [i/n, (i+1)/n] lies inside [start, end], else 0.
 */
export function controlKeep(n: number, start: number, end: number): number[] {
  return Array.from({ length: n }, (_, i) => 1 - Number(i / n < start || (i + 1) / n > end))
}
