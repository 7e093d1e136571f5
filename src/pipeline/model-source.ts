/**
 * @module
 * Where model files come from: a folder on disk (Node), the worker's static assets, or `fetch`
 * in a browser. The pipeline reads every file through this small interface.
 */
import type { RangeReader } from './onnx-metadata'

/**
 * Read access to a model folder in the diffusers / optimum ONNX layout. Only `has` and
 * `readBytes` are required; a source over files on disk also offers the optional members, so
 * that a multi-gigabyte model is never held in JS memory (Node cannot even read a file over
 * 2 GiB into one buffer): metadata through ranged reads, digests by streaming, sessions from paths.
 */
export interface ModelSource {
  /** A label for messages, e.g. the folder path. */
  readonly label: string
  /** Whether `path` (relative to the model root, `/`-separated) exists. */
  has(path: string): Promise<boolean>
  /** The file's bytes. Rejects with a message naming the file when it is missing. */
  readBytes(path: string): Promise<Uint8Array>
  /** Random access to a file, for reading what precedes its weights. */
  open?(path: string): Promise<RangeReader & { close(): Promise<void> }>
  /** SHA-256 (lowercase hex) of the file's bytes, computed without holding the file. */
  sha256?(path: string): Promise<string>
  /** The file's absolute path on disk, for runtimes that load models from paths. */
  filePath?(path: string): string
  /** The file's size in bytes, without reading it. */
  size?(path: string): Promise<number>
}

/** Error raised for a model folder that cannot be served (missing or malformed files). */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError'
}

/** A `ModelSource` over an in-memory map (bundled modules, tests). */
export function mapSource(
  label: string,
  files: Record<string, Uint8Array | ArrayBuffer | string>,
): ModelSource {
  const enc = new TextEncoder()
  return {
    label,
    has: async (p) => p in files,
    async readBytes(p) {
      const f = files[p]
      if (f === undefined) throw new ModelLoadError(`${label}: missing model file ${p}`)
      return typeof f === 'string' ? enc.encode(f) : f instanceof Uint8Array ? f : new Uint8Array(f)
    },
    async size(p) {
      return (await this.readBytes(p)).byteLength
    },
  }
}

/** Reads a file as UTF-8 text. */
export async function readText(source: ModelSource, path: string): Promise<string> {
  return new TextDecoder().decode(await source.readBytes(path))
}

/** Reads and parses a JSON file, naming the file on a parse error. */
export async function readJson<T = Record<string, unknown>>(
  source: ModelSource,
  path: string,
): Promise<T> {
  const text = await readText(source, path)
  try {
    return JSON.parse(text) as T
  } catch (e) {
    throw new ModelLoadError(`${source.label}: ${path} is not valid JSON (${(e as Error).message})`)
  }
}

/** A `ModelSource` over HTTP (browsers, Deno): files are fetched relative to `baseUrl`. */
export function fetchSource(
  baseUrl: string,
  fetchFn: (url: URL) => Promise<Response> = fetch,
): ModelSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`
  const get = (p: string) => fetchFn(new URL(p, base))
  return {
    label: base,
    has: async (p) => {
      // file:// fetches (Deno) reject for a missing file instead of answering 404.
      const res = await get(p).catch(() => undefined)
      await res?.body?.cancel()
      return !!res?.ok
    },
    async readBytes(p) {
      const res = await get(p)
      if (!res.ok) throw new ModelLoadError(`${base}: missing model file ${p} (HTTP ${res.status})`)
      return new Uint8Array(await res.arrayBuffer())
    },
    async size(p) {
      const res = await get(p)
      if (!res.ok) {
        await res.body?.cancel()
        throw new ModelLoadError(`${base}: missing model file ${p} (HTTP ${res.status})`)
      }
      const length = res.headers.get('content-length')
      if (length !== null && Number.isFinite(Number(length))) {
        await res.body?.cancel()
        return Number(length)
      }
      // No length sent (the Workers assets binding streams without one): count the bytes.
      return (await res.arrayBuffer()).byteLength
    },
  }
}
