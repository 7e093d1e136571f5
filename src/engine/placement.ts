/**
 * @module
 * Where a model's text encoder runs when a GPU backend does the denoising: at the edge when it
 * fits a 128 MB isolate next to everything else, otherwise on the backend (the edge then sends
 * token ids instead of hidden states). The one place this is decided.
 */
import type { ModelSpec } from '../pipeline/model'

/** Where the text encoder runs. */
export type TextEncoderPlacement = 'edge' | 'backend'

/**
 * Largest text encoder (ONNX file plus external weights) kept at the edge. ONNX Runtime on
 * WebAssembly holds the file bytes and a copy of the weights in its heap, plus an arena, so about
 * 3× this must fit under workerd's 128 MB limit; CLIP ViT-L/14 (≈ 246 MB in fp16) goes to the backend.
 */
export const EDGE_TEXT_ENCODER_MAX_BYTES = 32 * 1024 * 1024

/**
 * Size of a model's text encoder files (model and external data), in bytes, from the spec
 * (`componentBytes`, file sizes read without the files); unknown sizes count as too big.
 */
export function textEncoderBytes(spec: Pick<ModelSpec, 'componentBytes'>): number {
  return spec.componentBytes.text_encoder ?? Number.POSITIVE_INFINITY
}

/**
 * Decides the placement of one model's encoder. `overrides` is the `GPU_TEXT_ENCODER` var:
 * `edge` or `backend` for every model, or per model `tiny-shapes=backend,other=edge`; a model it
 * does not name is placed by size. Throws on a malformed value (a configuration error).
 */
export function textEncoderPlacement(
  modelId: string,
  encoderBytes: number,
  overrides = '',
): TextEncoderPlacement {
  let forAll: TextEncoderPlacement | 'auto' | undefined
  let forModel: TextEncoderPlacement | 'auto' | undefined
  for (const part of overrides
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [id, value] = part.includes('=') ? part.split('=', 2).map((s) => s.trim()) : ['*', part]
    if (value !== 'edge' && value !== 'backend' && value !== 'auto')
      throw new Error(`GPU_TEXT_ENCODER: "${part}" is not edge, backend or auto`)
    if (id === '*') forAll = value
    else if (id === modelId) forModel = value
  }
  const chosen = forModel ?? forAll ?? 'auto'
  if (chosen !== 'auto') return chosen
  return encoderBytes <= EDGE_TEXT_ENCODER_MAX_BYTES ? 'edge' : 'backend'
}
