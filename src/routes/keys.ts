/**
 * @module
 * Admin key management: `POST /v1/keys` (create), `GET /v1/keys` (list),
 * `DELETE /v1/keys/{id}` (revoke),
 * `POST /v1/keys/{id}/webhook-secret` (rotate the key's webhook secret). All need `Authorization: Bearer <ADMIN_TOKEN>`.
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { keyDeps } from '../bindings'
import {
  createKey,
  listKeys,
  parseCreateKeyInput,
  revokeKey,
  rotateWebhookSecret,
} from '../keys/api-keys'
import { adminAuth } from '../middleware/auth'
import { jsonBody } from '../middleware/json-body'

/** The key routes, mounted at `/v1/keys`. */
export function keyRoutes(options: { maxBodyBytes: number }) {
  return new Hono<AppEnv>()
    .use(adminAuth())
    .post('/', jsonBody({ maxBytes: options.maxBodyBytes }), async (c) => {
      const input = parseCreateKeyInput(c.get('json'))
      const { key, webhookSecret, record } = await createKey(keyDeps(c.env), input)
      return c.json({ ...record, key, webhook_secret: webhookSecret }, 201)
    })
    .post('/:id/webhook-secret', async (c) =>
      c.json(await rotateWebhookSecret(keyDeps(c.env), c.req.param('id'))),
    )
    .get('/', async (c) => c.json({ keys: await listKeys(keyDeps(c.env)) }))
    .delete('/:id', async (c) => c.json(await revokeKey(keyDeps(c.env), c.req.param('id'))))
}
