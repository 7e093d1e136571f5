/**
 * @module
 * Decoded VAE output → 8-bit RGB, exactly as diffusers' `VaeImageProcessor` does it:
 * `(x * 0.5 + 0.5).clamp(0, 1)`, then numpy's `(x * 255).round().astype(uint8)` in float32,
 * where `round` is round-half-to-even.
 */

/** An 8-bit RGB image, rows top to bottom, HWC. */
export interface RgbImage {
  width: number
  height: number
  data: Uint8Array
}

const f = Math.fround

/** Rounds half to even, as `numpy.round` does. */
function roundHalfEven(x: number): number {
  const r = Math.round(x)
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/**
 * Converts one image of a decoded batch (NCHW float32 in [-1, 1]) to RGB bytes.
 * @param decoded the VAE decoder output, shape [batch, 3, height, width]
 * @param index which image of the batch
 */
export function decodedToRgb(
  decoded: Float32Array,
  index: number,
  height: number,
  width: number,
): RgbImage {
  const plane = height * width
  const base = index * 3 * plane
  const data = new Uint8Array(plane * 3)
  for (let c = 0; c < 3; c++) {
    const src = base + c * plane
    for (let p = 0; p < plane; p++) {
      let x = f(f(decoded[src + p] * 0.5) + 0.5)
      x = x < 0 ? 0 : x > 1 ? 1 : x
      data[p * 3 + c] = roundHalfEven(f(x * 255))
    }
  }
  return { width, height, data }
}

/** An 8-bit single-channel image (a mask), rows top to bottom, HW. */
export interface GrayImage {
  width: number
  height: number
  data: Uint8Array
}
