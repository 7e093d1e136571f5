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

export { maxAbs, maxAbsDiff } from '../browser/golden-compare'
