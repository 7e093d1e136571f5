/**
 * @module
 * Warnings about a generation request that is valid but will not draw what it says: today, words
 * the model never saw in training (a model that declares its vocabulary, `ModelInfo.knownWords`;
 * the bundled tiny-shapes knows 33). They are answered in the `X-Prompt-Warnings` header, on the
 * image, JSON, event-stream and 202 answers alike, hits and misses alike; they are computed from
 * the request and the model, so they change neither the cache key nor the image.
 *
 * @example
 * // X-Prompt-Warnings: [{"type":"unknown-words","field":"prompt","words":["cat"],"detail":"…"}]
 */
import type { ModelInfo, TextToImageEngine } from '../engine/types'

/** The response header that carries the warnings: a JSON array of `PromptWarning`, ASCII only. */
export const PROMPT_WARNINGS_HEADER = 'X-Prompt-Warnings'

/** One warning: a stable `type`, the request field it is about, and what to tell a person. */
export interface PromptWarning {
  type: 'unknown-words'
  field: 'prompt' | 'negative_prompt'
  /** The words the model was not trained on, lower case, each once, in prompt order. */
  words: string[]
  detail: string
}

/** Words as the tokenizer's lower-casing sees them: runs of letters and digits. */
const WORD = /[\p{L}\p{N}]+/gu

/** A prompt's words that `model` was not trained on; none when it declares no vocabulary. */
export function unknownWords(model: Pick<ModelInfo, 'knownWords'>, text: string): string[] {
  if (!model.knownWords) return []
  const known = new Set(model.knownWords)
  const words = text.toLowerCase().match(WORD) ?? []
  return [...new Set(words.filter((w) => !known.has(w)))]
}

/** The warnings of a prompt and negative prompt for `model`. */
export function promptWarnings(
  model: Pick<ModelInfo, 'id' | 'knownWords'>,
  prompts: { prompt?: unknown; negative_prompt?: unknown },
): PromptWarning[] {
  const out: PromptWarning[] = []
  for (const field of ['prompt', 'negative_prompt'] as const) {
    const text = prompts[field]
    if (typeof text !== 'string') continue
    const words = unknownWords(model, text)
    if (words.length === 0) continue
    out.push({
      type: 'unknown-words',
      field,
      words,
      detail: `model ${model.id} was never trained on ${words.length === 1 ? 'the word' : 'the words'} ${words.map((w) => `"${w}"`).join(', ')} (${field}); they do not steer the image (see its known_words in GET /v1/models)`,
    })
  }
  return out
}

/**
 * The warnings of a request body, for the model it names (else the default, the first served,
 * as validation picks it). An invalid body has none here: validation answers it.
 */
export function requestWarnings(
  engine: Pick<TextToImageEngine, 'models'>,
  body: unknown,
): PromptWarning[] {
  if (typeof body !== 'object' || body === null) return []
  const b = body as { model?: unknown; prompt?: unknown; negative_prompt?: unknown }
  const models = engine.models()
  const model = b.model === undefined ? models[0] : models.find((m) => m.id === b.model)
  return model ? promptWarnings(model, b) : []
}

/** The header value of `warnings` (JSON, non-ASCII escaped as `\uXXXX`), or undefined for none. */
export function warningsHeader(warnings: readonly PromptWarning[]): string | undefined {
  if (warnings.length === 0) return undefined
  return JSON.stringify(warnings).replace(
    /[\u007f-\uffff]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}
