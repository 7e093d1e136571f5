/** Paths and loaders for the reference data in ../shared/golden, read in place. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

/** Root of the golden reference data (outside the repository). */
export const GOLDEN = fileURLToPath(new URL('../../../shared/golden/', import.meta.url))

/** Parses a golden JSON file by its path under GOLDEN. */
export function goldenJson<T = any>(path: string): T {
  return JSON.parse(readFileSync(join(GOLDEN, path), 'utf8')) as T
}

/** max |a - b| over two arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

/** max |x| over an array. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}
