/**
 * @module
 * `POST /v1/batch` (scope `generate`): a list of image requests → a map of permanent URLs, for
 * static site generators (`tti prebuild prompts.json`). See `src/images/batch.ts`.
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { imageDeps } from '../bindings'
import { createBatch } from '../images/batch'
import { BATCH_MAX_BODY_BYTES } from '../embeds/limits'
import { parseBatchRequest } from '../embeds/schema'
import type { EngineProvider } from '../engine/provider'
import type { RateLimitPolicy } from '../keys/api-keys'
import { apiKeyAuth } from '../middleware/auth'
import { jsonBody } from '../middleware/json-body'
import { rateLimit } from '../middleware/rate-limit'
import { publicBase } from '../public-url'

/** The batch route, mounted at `/v1/batch`. */
export function batchRoutes(options: { engine: EngineProvider; rateLimit: RateLimitPolicy }) {
  return new Hono<AppEnv>().post(
    '/',
    apiKeyAuth({ scope: 'generate' }),
    rateLimit({ defaults: options.rateLimit }),
    jsonBody({ maxBytes: BATCH_MAX_BODY_BYTES }),
    async (c) => {
      const { items } = parseBatchRequest(c.get('json'))
      const result = await createBatch(
        await imageDeps(c.env, options.engine, c.get('charge'), c.get('apiKey').id),
        items,
        publicBase(c),
      )
      c.header('Cache-Control', 'no-store')
      return c.json(result)
    },
  )
}
