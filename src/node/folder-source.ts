/**
 * @module
 * A `ModelSource` over a folder on disk, for Node (CLI, GPU backend service, tests, benchmarks).
 */
import { access, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ModelLoadError, type ModelSource } from '../pipeline/model-source'

/** Reads model files from `dir`. */
export function folderSource(dir: string): ModelSource {
  const root = resolve(dir)
  return {
    label: root,
    has: (p) =>
      access(join(root, p)).then(
        () => true,
        () => false,
      ),
    async readBytes(p) {
      try {
        return new Uint8Array(await readFile(join(root, p)))
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        throw new ModelLoadError(
          code === 'ENOENT'
            ? `${root}: missing model file ${p}`
            : `${root}: cannot read ${p} (${code})`,
        )
      }
    },
  }
}
