/**
 * float32 ↔ float16 at the model boundary, checked exhaustively against the definition of
 * IEEE 754 binary16: every half value round-trips, every midpoint between neighbours rounds to
 * the even one, and overflow, subnormals, signed zeros, infinities and NaN come out as the
 * standard says. Both the portable conversion and the one `toFloat16Bits` uses here agree.
 */
import { describe, expect, it } from 'vitest'
import { float32ToHalfBits, fromFloat16Bits, toFloat16Bits } from '../../src/pipeline/tensor'

/** Every binary16 bit pattern. */
const ALL = Uint16Array.from({ length: 65536 }, (_, i) => i)
const isNaNBits = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0

describe.each([
  ['portable', float32ToHalfBits],
  ['toFloat16Bits', toFloat16Bits],
])('float32 → float16 (%s)', (_name, convert) => {
  it('decodes every half exactly and encodes it back to the same bits (NaN stays NaN)', () => {
    const values = fromFloat16Bits(ALL)
    const back = convert(values)
    for (let h = 0; h < 65536; h++) {
      if (isNaNBits(h)) {
        expect(Number.isNaN(values[h])).toBe(true)
        expect(isNaNBits(back[h])).toBe(true)
      } else expect(back[h]).toBe(h)
    }
  })

  it('rounds midpoints between neighbouring halves to the even one, and others to the nearest', () => {
    const values = fromFloat16Bits(ALL)
    const mids: number[] = []
    const want: number[] = []
    for (const sign of [0, 0x8000]) {
      for (let h = 0; h < 0x7bff; h++) {
        const a = values[sign | h]
        const b = values[sign | (h + 1)]
        const mid = (a + b) / 2 // exact in float32: halves have 11 significant bits
        const even = (h & 1) === 0 ? sign | h : sign | (h + 1)
        mids.push(mid, mid + (b - a) / 8, mid - (b - a) / 8)
        want.push(even, sign | (h + 1), sign | h)
      }
    }
    const got = convert(Float32Array.from(mids))
    for (let i = 0; i < want.length; i++)
      if (got[i] !== want[i]) expect([mids[i], got[i]]).toEqual([mids[i], want[i]])
  })

  it('handles overflow, the largest half, subnormals, zeros, infinities and NaN', () => {
    const cases: [number, number][] = [
      [65504, 0x7bff], // largest finite half
      [65519.99, 0x7bff], // just below the rounding boundary
      [65520, 0x7c00], // rounds up to infinity (the boundary is a tie to even: 0x7c00)
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // half of it: a tie, to even (zero)
      [2 ** -25 * 1.5, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units: to even
      [1e-10, 0x0000],
      [-1e-10, 0x8000],
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [1 / 3, 0x3555],
    ]
    const got = convert(Float32Array.from(cases.map((c) => c[0])))
    expect(Array.from(got)).toEqual(cases.map((c) => c[1]))
    expect(isNaNBits(convert(Float32Array.of(NaN))[0])).toBe(true)
  })
})

describe('float16 → float32', () => {
  it('decodes subnormals, signed zeros, infinities and NaN', () => {
    const got = fromFloat16Bits(Uint16Array.of(0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x7e00))
    expect(got[0]).toBe(2 ** -24)
    expect(got[1]).toBe(1023 * 2 ** -24)
    expect(Object.is(got[2], -0)).toBe(true)
    expect(got[3]).toBe(Infinity)
    expect(got[4]).toBe(-Infinity)
    expect(Number.isNaN(got[5])).toBe(true)
  })
})
