/**
 * @module
 * `GET /v1/models`: the models this deployment serves, with defaults and limits.
 */
import { Hono } from 'hono'
import type * as z from 'zod'
import type { AppEnv } from '../app-env'
import type { EngineProvider } from '../engine/provider'
import type { ModelInfo } from '../engine/types'
import { apiKeyAuth } from '../middleware/auth'
import type { ModelSchema } from '../openapi/schemas'

/** A model as the API shows it (snake_case, like request fields). */
export function publicModel(m: ModelInfo): z.output<typeof ModelSchema> {
  const l = m.limits
  return {
    id: m.id,
    digest: m.digest,
    max_prompt_tokens: m.maxPromptTokens,
    defaults: m.defaults,
    limits: {
      max_width: l.maxWidth,
      max_height: l.maxHeight,
      size_multiple: l.sizeMultiple,
      min_steps: l.minSteps,
      max_steps: l.maxSteps,
      min_guidance_scale: l.minGuidance,
      max_guidance_scale: l.maxGuidance,
      max_images: l.maxImages,
    },
    schedulers: [...m.schedulers],
    options: [...m.options],
    conditioning: { ...m.conditioning },
    ...(m.knownWords ? { known_words: [...m.knownWords] } : {}),
  }
}

/** The model routes, mounted at `/v1/models`. */
export function modelRoutes(options: { engine: EngineProvider }) {
  return new Hono<AppEnv>().get('/', apiKeyAuth({ scope: 'read' }), async (c) => {
    const engine = await options.engine(c.env)
    return c.json({ models: engine.models().map(publicModel) })
  })
}
