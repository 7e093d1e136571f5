/**
 * @module
 * `GET /openapi.json` (the OpenAPI 3.1 document) and `GET /docs` (its interactive reference).
 * Both are public: they describe the API, not any deployment's secrets.
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { DOCS_HTML, docsScriptHash } from './docs-page'
import { openApiJson, type DocumentOptions } from './document'

/** The document routes, mounted at `/`. */
export function openApiRoutes(options: DocumentOptions) {
  if (!Number.isInteger(options.maxBodyBytes) || options.maxBodyBytes <= 0) {
    throw new Error(`openApiRoutes: maxBodyBytes must be a positive integer`)
  }
  return new Hono<AppEnv>()
    .get('/openapi.json', (c) =>
      c.body(openApiJson(options), 200, {
        'Content-Type': 'application/json; charset=utf-8',
        // Any origin may read the description (code generators, hosted viewers).
        'Access-Control-Allow-Origin': '*',
        'Cache-Control': 'no-cache',
      }),
    )
    .get('/docs', async (c) =>
      c.html(DOCS_HTML, 200, {
        'Content-Security-Policy': [
          "default-src 'none'",
          `script-src ${await docsScriptHash()}`,
          "style-src 'unsafe-inline'",
          "connect-src 'self'",
          "img-src 'self' blob: data:",
          "base-uri 'none'",
          "form-action 'none'",
          "frame-ancestors 'none'",
        ].join('; '),
        'Cache-Control': 'no-cache',
      }),
    )
}
