/**
 * @module
 * The picture fields of an image request (`image`, `mask`, `control_image`), read and decoded
 * before validation: `readPicture` (`./pictures`) checks each against the byte and pixel limits,
 * stores an upload under its hash, and names the field in any problem. A mask is reduced to its
 * luminance here, as diffusers' mask processor does with PIL's `convert('L')`.
 */
import type { InputPicture, PictureField } from '../engine/types'
import { luminance, readPicture, type PictureDeps } from './pictures'
import type { RequestPictures } from './validate'

/** The request fields that carry a picture, in the order they are read. */
export const PICTURE_FIELDS: readonly PictureField[] = Object.freeze([
  'image',
  'mask',
  'control_image',
])

/**
 * Splits a parsed body into its other fields (for `resolveRequest`) and its decoded pictures.
 * A body that is not an object is returned as it is, for validation to refuse.
 */
export async function readRequestPictures(
  body: unknown,
  deps: PictureDeps,
  options: { maxPixels?: number } = {},
): Promise<{ fields: unknown; pictures: RequestPictures }> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return { fields: body, pictures: {} }
  const fields: Record<string, unknown> = { ...body }
  const pictures: RequestPictures = {}
  for (const field of PICTURE_FIELDS) {
    const value = fields[field]
    delete fields[field]
    if (value === undefined || value === null || value === '') continue
    const picture = await readPicture(field, value, deps, options)
    const data = field === 'mask' ? luminance(picture) : picture.rgb
    pictures[field] = {
      sha256: picture.sha256,
      width: picture.width,
      height: picture.height,
      data,
    } satisfies InputPicture
  }
  return { fields, pictures }
}
