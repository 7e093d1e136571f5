/** Comparisons against golden arrays, runtime-neutral (Node, workerd, browsers). */

/** max |x| over an array. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}

/** max |a - b| over two arrays of one length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

/**
 * How 8-bit pixels differ from the reference's: the largest |Δ| and the share of values that
 * differ at all (the golden README's image tolerance: |Δ| ≤ 1, at most 1 % differing).
 */
export function imageDiff(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
): { worst: number; share: number } {
  const worst = maxAbsDiff(got, want)
  let differ = 0
  for (let k = 0; k < want.length; k++) if (got[k] !== want[k]) differ++
  return { worst, share: differ / want.length }
}
