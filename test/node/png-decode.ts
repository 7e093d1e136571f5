/** Decodes the PNGs this project writes (8-bit RGB, filter 0) back to RGB bytes, for tests. */
import { unzlibSync } from 'fflate'

/** RGB bytes (HWC) of a PNG written by `encodePng`. */
export function decodePngRgb(png: Uint8Array): Uint8Array {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength)
  let width = 0
  let height = 0
  const idat: Uint8Array[] = []
  for (let o = 8; o + 12 <= png.length; ) {
    const len = view.getUint32(o)
    const type = String.fromCharCode(...png.subarray(o + 4, o + 8))
    if (type === 'IHDR') {
      width = view.getUint32(o + 8)
      height = view.getUint32(o + 12)
    } else if (type === 'IDAT') idat.push(png.subarray(o + 8, o + 8 + len))
    o += 12 + len
  }
  const z = new Uint8Array(idat.reduce((n, c) => n + c.length, 0))
  let p = 0
  for (const c of idat) {
    z.set(c, p)
    p += c.length
  }
  const raw = unzlibSync(z)
  const out = new Uint8Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    if (raw[y * (width * 3 + 1)] !== 0) throw new Error('only filter type 0 is supported')
    out.set(raw.subarray(y * (width * 3 + 1) + 1, (y + 1) * (width * 3 + 1)), y * width * 3)
  }
  return out
}
