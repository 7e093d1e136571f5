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
  strength: z
    .number({ error: 'must be a number' })
    .gt(0, { error: 'must be above 0 and at most 1' })
    .max(1, { error: 'must be above 0 and at most 1' })
    .optional()
    .meta({
      description:
        'With `image`: how far the picture is noised before denoising, in (0, 1] (diffusers `strength`). Low keeps the picture, 1 keeps only what `mask` leaves. `steps` × `strength` steps run (at least 1). Default 0.8, or 1 with a `mask`.',
    }),
  mask_overlay: z.boolean({ error: 'must be a boolean' }).optional().meta({
    description:
      "With `mask`: paste the input's own pixels back outside the mask after decoding, so they stay exactly as sent (diffusers' `apply_overlay`); off, they are the VAE's reconstruction of them, as diffusers' inpainting returns them.",
    default: false,
  }),
  control_scale: z
    .number({ error: 'must be a number' })
    .min(0, { error: 'must be between 0 and 2' })
    .max(2, { error: 'must be between 0 and 2' })
    .optional()
    .meta({
      description:
        'With `control_image`: how strongly it steers (diffusers `controlnet_conditioning_scale`).',
      default: 1,
    }),
  control_start: fraction({
    description:
      'With `control_image`: the fraction of the steps after which the ControlNet starts (`control_guidance_start`); below `control_end`.',
    default: 0,
  }),
  control_end: fraction({
    description:
      'With `control_image`: the fraction of the steps after which it stops (`control_guidance_end`).',
    default: 1,
  }),
})

function fraction(meta: { description: string; default?: number }) {
  return z
    .number({ error: 'must be a number' })
    .min(0, { error: 'must be between 0 and 1' })
    .max(1, { error: 'must be between 0 and 1' })
    .optional()
    .meta(meta)
}

/** Options as validated. */
export type GenerationOptionValues = z.output<typeof GenerationOptions>

/**
 * Each option's default: a request that sets an option to it keys and renders as one without.
 * `strength` has none of its own (0.8, or 1 with a mask: the pipeline's `CONDITIONING_DEFAULTS`),
 * so it is keyed whenever it is set.
 */
export const OPTION_DEFAULTS: {
  readonly [K in keyof Required<GenerationOptionValues>]:
    | Required<GenerationOptionValues>[K]
    | undefined
} = Object.freeze({
  guidance_rescale: 0,
  strength: undefined,
  mask_overlay: false,
  control_scale: 1,
  control_start: 0,
  control_end: 1,
})

/** The options that only mean something with a picture, and the picture field each needs. */
export const PICTURE_OPTIONS = Object.freeze({
  strength: 'image',
  mask_overlay: 'mask',
  control_scale: 'control_image',
  control_start: 'control_image',
  control_end: 'control_image',
} as const)

/** The option names, in declaration order. */
export const OPTION_NAMES = Object.freeze(
  Object.keys(GenerationOptions.shape) as (keyof GenerationOptionValues)[],
)
