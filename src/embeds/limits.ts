/**
 * @module
 * Limits of the embed and batch endpoints, in a module without dependencies so the typed client
 * (which must stay runtime-neutral and small) shares them with the server.
 */

/** Most items one POST /v1/batch may hold; `tti prebuild` splits longer lists. */
export const BATCH_MAX_ITEMS = 64

/** Largest POST /v1/batch body: 64 items of a few hundred bytes each. */
export const BATCH_MAX_BODY_BYTES = 64 * 1024

/** Most allowed origins one embed URL may carry (each one lengthens the URL). */
export const EMBED_MAX_ORIGINS = 16

/** Longest `expires_in` of an embed URL: ten years, in seconds. */
export const EMBED_MAX_EXPIRES_IN = 10 * 365 * 86_400
