/**
 * @module
 * The bundled default model. Its files ship as the worker's static assets (wrangler.toml
 * `[assets]`, directory `models/`) and are read through the `MODEL_FILES` binding, so that
 * `npm start` serves real images with nothing to download.
 *
 * NOTE: the ONNX weights (18 MB then, 28 MB now; barely compressible) used to be bundled as Data modules, which
 * put the deployed script at about 20 MB gzipped, over the Workers limit of 10 MB. Static assets
 * are uploaded beside the script and do not count towards it; `run_worker_first` keeps them
 * private (no request is served from the asset store directly).
 */
import { fetchSource, type ModelSource } from '../pipeline/model-source'

/** The bundled model's folder under `models/` (its id comes from its `model_index.json`). */
const BUNDLED_MODEL_DIR = 'tiny-shapes'

/** The assets binding that holds `models/` (a Workers `Fetcher`). */
export interface ModelFiles {
  fetch(input: URL | string): Promise<Response>
}

/** The bundled model's files, read through the assets binding. */
export function bundledModelSource(files: ModelFiles | undefined): ModelSource {
  if (!files) throw new Error('the MODEL_FILES assets binding is missing (see wrangler.toml)')
  // Only the path matters to an assets binding; the host is a placeholder.
  return fetchSource(`https://model-files.invalid/${BUNDLED_MODEL_DIR}/`, (url) => files.fetch(url))
}
