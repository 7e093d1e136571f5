/**
 * @module
 * Generation options: request fields that need no model-dependent bounds. Each is declared once,
 * here, with its validation, documentation and default; `GenerateRequest.options` carries the
 * ones a request sets to something other than the default. Validation, the cache key, embeds,
 * the batch, the backend job, the OpenAPI document and the typed client all take them from here,
 * so a new option is this file, `toPipelineParams` (`./local-engine`) and the pipeline.
 */
// A namespace import lets esbuild drop the zod exports (locales…) nobody uses.
import * as z from 'zod'

/** The option fields of POST /v1/images (snake_case, as the API takes them). */
export const GenerationOptions = z.object({
  guidance_rescale: z
    .number({ error: 'must be a number' })
    .min(0, { error: 'must be between 0 and 1' })
    .max(1, { error: 'must be between 0 and 1' })
    .optional()
    .meta({
      description:
        'Rescales the guided prediction towards the standard deviation of the text-conditioned one (Lin et al. 2023, §3.4; diffusers `guidance_rescale`), against over-exposure at high guidance. 0 disables it.',
      default: 0,
    }),
})

/** Options as validated. */
export type GenerationOptionValues = z.output<typeof GenerationOptions>

/** Each option's default: a request that sets an option to it keys and renders as one without. */
export const OPTION_DEFAULTS: Readonly<Required<GenerationOptionValues>> = Object.freeze({
  guidance_rescale: 0,
})

/** The option names, in declaration order. */
export const OPTION_NAMES = Object.freeze(
  Object.keys(GenerationOptions.shape) as (keyof GenerationOptionValues)[],
)
