/**
 * @module
 * The bundled default model, imported as worker modules (wrangler's Data / Text rules) so that
 * `npm start` serves real images with nothing to download.
 */
import { mapSource, type ModelSource } from '../pipeline/model-source'
import modelIndex from '../../models/tiny-shapes/model_index.json'
import schedulerConfig from '../../models/tiny-shapes/scheduler/scheduler_config.json'
import vocab from '../../models/tiny-shapes/tokenizer/vocab.json'
import merges from '../../models/tiny-shapes/tokenizer/merges.txt'
import tokenizerConfig from '../../models/tiny-shapes/tokenizer/tokenizer_config.json'
import specialTokens from '../../models/tiny-shapes/tokenizer/special_tokens_map.json'
import textEncoderConfig from '../../models/tiny-shapes/text_encoder/config.json'
import textEncoder from '../../models/tiny-shapes/text_encoder/model.onnx'
import unetConfig from '../../models/tiny-shapes/unet/config.json'
import unet from '../../models/tiny-shapes/unet/model.onnx'
import vaeConfig from '../../models/tiny-shapes/vae_decoder/config.json'
import vaeDecoder from '../../models/tiny-shapes/vae_decoder/model.onnx'

/** Public id of the bundled model. */
export const BUNDLED_MODEL_ID = 'tiny-shapes'

const json = (v: unknown) => JSON.stringify(v)

/** The bundled model's files. */
export function bundledModelSource(): ModelSource {
  return mapSource(BUNDLED_MODEL_ID, {
    'model_index.json': json(modelIndex),
    'scheduler/scheduler_config.json': json(schedulerConfig),
    'tokenizer/vocab.json': json(vocab),
    'tokenizer/merges.txt': merges,
    'tokenizer/tokenizer_config.json': json(tokenizerConfig),
    'tokenizer/special_tokens_map.json': json(specialTokens),
    'text_encoder/config.json': json(textEncoderConfig),
    'text_encoder/model.onnx': textEncoder,
    'unet/config.json': json(unetConfig),
    'unet/model.onnx': unet,
    'vae_decoder/config.json': json(vaeConfig),
    'vae_decoder/model.onnx': vaeDecoder,
  })
}
