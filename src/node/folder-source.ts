/**
 * @module
 * A `ModelSource` over a folder on disk, for Node (CLI, GPU backend service, tests, benchmarks).
 * It never holds a weight file in memory: metadata comes through ranged reads, digests by
 * streaming (cached in `.tti-sha256.json` beside the model, keyed by size and mtime, so a restart
 * does not hash gigabytes again), and sessions load from the file path.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, open, readFile, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ModelLoadError, type ModelSource } from '../pipeline/model-source'

/** The digest cache's file name, in the model folder. */
export const DIGEST_CACHE_FILE = '.tti-sha256.json'

/**
 * Files below this size are hashed again on each load (milliseconds) instead of cached, so small
 * model folders (the bundled one, reference data) are never written to.
 */
export const DIGEST_CACHE_MIN_BYTES = 64 * 2 ** 20

/** Options of `folderSource`. */
export interface FolderSourceOptions {
  /** Cache digests of files from this size up (default `DIGEST_CACHE_MIN_BYTES`). */
  digestCacheMinBytes?: number
}

type DigestCache = Record<string, { size: number; mtimeMs: number; sha256: string }>

/** Reads model files from `dir`. */
export function folderSource(dir: string, options: FolderSourceOptions = {}): ModelSource {
  const root = resolve(dir)
  const cacheFrom = options.digestCacheMinBytes ?? DIGEST_CACHE_MIN_BYTES
  const fail = (p: string, e: unknown): never => {
    const code = (e as NodeJS.ErrnoException).code
    throw new ModelLoadError(
      code === 'ENOENT'
        ? `${root}: missing model file ${p}`
        : `${root}: cannot read ${p} (${code})`,
    )
  }
  let cache: Promise<DigestCache> | undefined
  const loadCache = () =>
    (cache ??= readFile(join(root, DIGEST_CACHE_FILE), 'utf8').then(
      (t) => JSON.parse(t) as DigestCache,
      (): DigestCache => ({}),
    ))
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
        return fail(p, e)
      }
    },
    filePath: (p) => join(root, p),
    async size(p) {
      try {
        return (await stat(join(root, p))).size
      } catch (e) {
        return fail(p, e)
      }
    },
    async open(p) {
      const handle = await open(join(root, p)).catch((e) => fail(p, e))
      const { size } = await handle.stat()
      return {
        size,
        async read(offset, length) {
          const buf = new Uint8Array(Math.max(0, Math.min(length, size - offset)))
          const { bytesRead } = await handle.read(buf, 0, buf.length, offset)
          return buf.subarray(0, bytesRead)
        },
        close: () => handle.close(),
      }
    },
    async sha256(p) {
      const file = join(root, p)
      const info = await stat(file).catch((e) => fail(p, e))
      const entries = await loadCache()
      const hit = entries[p]
      if (hit && hit.size === info.size && hit.mtimeMs === info.mtimeMs) return hit.sha256
      const hash = createHash('sha256')
      for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20 }))
        hash.update(chunk as Buffer)
      const sha256 = hash.digest('hex')
      if (info.size < cacheFrom) return sha256
      entries[p] = { size: info.size, mtimeMs: info.mtimeMs, sha256 }
      // Best effort: a read-only model folder just hashes again next time.
      await writeFile(join(root, DIGEST_CACHE_FILE), JSON.stringify(entries, null, 2)).catch(
        () => undefined,
      )
      return sha256
    },
  }
}
