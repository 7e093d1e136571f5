/**
 * @module
 * The isolate's own copy of recently served image bytes, in front of the Cache API: a permanent
 * URL names immutable, never-deleted bytes (content-addressed), so a copy can never be stale,
 * and a hit here costs no cache lookup at all (in `wrangler dev` the Cache API is a loopback
 * service; in production a lookup is still a round trip out of the isolate). Bounded by total
 * bytes and evicted least-recently-used, so it stays a small part of the isolate's 128 MB.
 */

/** Bytes kept per isolate (about 3,500 images of the bundled model's 4.7 KB). */
export const HOT_IMAGE_BYTES = 16 * 1024 * 1024

/** Largest single image kept: bigger ones are served from the Cache API as before. */
export const HOT_ENTRY_BYTES = 1024 * 1024

/** A least-recently-used map of URL → bytes, bounded by their total size. */
export class HotImages {
  readonly #entries = new Map<string, Uint8Array>()
  #bytes = 0

  /** Builds an empty cache of at most `capacity` bytes. */
  constructor(readonly capacity: number = HOT_IMAGE_BYTES) {}

  /** The bytes under `url`, marking them recently used. */
  get(url: string): Uint8Array | undefined {
    const bytes = this.#entries.get(url)
    if (!bytes) return undefined
    this.#entries.delete(url)
    this.#entries.set(url, bytes)
    return bytes
  }

  /** Keeps `bytes` under `url`, evicting the least recently used beyond the capacity. */
  set(url: string, bytes: Uint8Array): void {
    if (bytes.byteLength > Math.min(HOT_ENTRY_BYTES, this.capacity)) return
    const old = this.#entries.get(url)
    if (old) {
      this.#entries.delete(url)
      this.#bytes -= old.byteLength
    }
    this.#entries.set(url, bytes)
    this.#bytes += bytes.byteLength
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.capacity) break
      this.#entries.delete(k)
      this.#bytes -= v.byteLength
    }
  }

  /** Bytes held now. */
  get size(): number {
    return this.#bytes
  }
}

/** The isolate's instance (module state lives as long as the isolate). */
export const hotImages = new HotImages()
