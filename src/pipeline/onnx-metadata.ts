/**
 * @module
 * Reads what the pipeline must know about an ONNX model before any weights are read: its graph
 * inputs and outputs (names, element types, shapes) and the external data files its initializers
 * live in. It walks the protobuf wire format (ModelProto → GraphProto, field numbers from
 * `onnx/onnx.proto`) through ranged reads and skips every weight's bytes, so a multi-gigabyte
 * model costs a few kilobytes of I/O here; ONNX Runtime reads the weights itself afterwards.
 *
 * @example
 * const meta = await readOnnxMetadata(bytesReader(await readFile('unet/model.onnx')))
 * meta.inputs // [{ name: 'sample', type: 'float16', shape: ['batch', 4, 'h', 'w'] }, …]
 * meta.externalData // ['model.onnx_data']
 */
import type { ValueInfo } from './tensor'

/** Random access to a file's bytes. */
export interface RangeReader {
  /** The file's size in bytes. */
  readonly size: number
  /** Bytes `[offset, offset + length)`; may return fewer only at the end of the file. */
  read(offset: number, length: number): Promise<Uint8Array>
}

/** What `readOnnxMetadata` finds. */
export interface OnnxMetadata {
  inputs: ValueInfo[]
  outputs: ValueInfo[]
  /** Distinct `location`s of external initializers, relative to the model file, in first-use order. */
  externalData: string[]
}

/** Error for bytes that are not a well-formed ONNX model. */
export class OnnxFormatError extends Error {
  override name = 'OnnxFormatError'
}

/** ONNX `TensorProto.DataType` → the element type names ONNX Runtime's JS API uses. */
const ELEMENT_TYPES: Readonly<Record<number, string>> = Object.freeze({
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
})

/** Field numbers of the messages walked here (onnx.proto). */
const F = Object.freeze({
  model: { graph: 7 },
  graph: { initializer: 5, input: 11, output: 12 },
  valueInfo: { name: 1, type: 2 },
  type: { tensor: 1 },
  tensorType: { elemType: 1, shape: 2 },
  shape: { dim: 1 },
  dim: { value: 1, param: 2 },
  tensor: { externalData: 13, dataLocation: 14 },
  entry: { key: 1, value: 2 },
})

/** Reads the metadata of the model behind `reader`. */
export async function readOnnxMetadata(reader: RangeReader): Promise<OnnxMetadata> {
  const r = new BufferedReader(reader)
  const graph = await findField(r, 0, reader.size, F.model.graph)
  if (!graph) throw new OnnxFormatError('no graph in the model')
  const inputs: ValueInfo[] = []
  const outputs: ValueInfo[] = []
  const externalData: string[] = []
  await forEachField(r, graph.start, graph.end, async (field, start, end) => {
    if (field === F.graph.input) inputs.push(valueInfo(await r.bytes(start, end)))
    else if (field === F.graph.output) outputs.push(valueInfo(await r.bytes(start, end)))
    else if (field === F.graph.initializer) {
      const location = await externalLocation(r, start, end)
      if (location !== undefined && !externalData.includes(location)) externalData.push(location)
    }
  })
  return { inputs, outputs, externalData }
}

/** A `RangeReader` over bytes in memory. */
export function bytesReader(bytes: Uint8Array): RangeReader {
  return {
    size: bytes.length,
    read: async (offset, length) => bytes.subarray(offset, Math.min(bytes.length, offset + length)),
  }
}

/** Reads ahead in chunks, so walking many small messages costs few `read` calls. */
class BufferedReader {
  static readonly CHUNK = 64 * 1024
  #buf: Uint8Array = new Uint8Array(0)
  #at = 0
  constructor(readonly source: RangeReader) {}

  /** Bytes `[start, end)`, as one array. */
  async bytes(start: number, end: number): Promise<Uint8Array> {
    if (start >= this.#at && end <= this.#at + this.#buf.length)
      return this.#buf.subarray(start - this.#at, end - this.#at)
    const want = Math.max(end - start, BufferedReader.CHUNK)
    this.#buf = await this.source.read(start, Math.min(want, this.source.size - start))
    this.#at = start
    if (this.#buf.length < end - start) throw new OnnxFormatError('the model file is truncated')
    return this.#buf.subarray(0, end - start)
  }

  /** A varint at `pos`: its value and the position after it. */
  async varint(pos: number, end: number): Promise<[number, number]> {
    const b = await this.bytes(pos, Math.min(end, pos + 10))
    let v = 0
    let scale = 1
    for (let i = 0; i < b.length; i++) {
      v += (b[i] & 0x7f) * scale
      if (!(b[i] & 0x80)) return [v, pos + i + 1]
      scale *= 128
    }
    throw new OnnxFormatError('a varint runs past its message')
  }
}

/** Calls `fn` with each length-delimited field of the message in `[start, end)`; skips the rest. */
async function forEachField(
  r: BufferedReader,
  start: number,
  end: number,
  fn: (field: number, start: number, end: number) => Promise<void> | void,
): Promise<void> {
  let pos = start
  while (pos < end) {
    const [tag, next] = await r.varint(pos, end)
    const field = Math.floor(tag / 8)
    const wire = tag % 8
    pos = next
    if (wire === 0) pos = (await r.varint(pos, end))[1]
    else if (wire === 1) pos += 8
    else if (wire === 5) pos += 4
    else if (wire === 2) {
      const [len, body] = await r.varint(pos, end)
      if (body + len > end) throw new OnnxFormatError('a field runs past its message')
      await fn(field, body, body + len)
      pos = body + len
    } else throw new OnnxFormatError(`unsupported protobuf wire type ${wire}`)
  }
  if (pos !== end) throw new OnnxFormatError('a message ends inside a field')
}

/** The first length-delimited field `field` of the message in `[start, end)`. */
async function findField(
  r: BufferedReader,
  start: number,
  end: number,
  field: number,
): Promise<{ start: number; end: number } | undefined> {
  let found: { start: number; end: number } | undefined
  await forEachField(r, start, end, (f, s, e) => {
    if (f === field && !found) found = { start: s, end: e }
  })
  return found
}

/** The `location` of an external initializer (`data_location` EXTERNAL), else undefined. */
async function externalLocation(
  r: BufferedReader,
  start: number,
  end: number,
): Promise<string | undefined> {
  let location: string | undefined
  // Scalar fields are not visited by forEachField; external_data entries are all we need:
  // an initializer with a `location` entry is stored outside the model file.
  await forEachField(r, start, end, async (field, s, e) => {
    if (field !== F.tensor.externalData) return
    const entry = fields(await r.bytes(s, e))
    const key = text(entry.get(F.entry.key)?.[0])
    if (key === 'location') location = text(entry.get(F.entry.value)?.[0])
  })
  return location
}

/** Parses a `ValueInfoProto` held in memory. */
function valueInfo(bytes: Uint8Array): ValueInfo {
  const m = fields(bytes)
  const name = text(m.get(F.valueInfo.name)?.[0]) ?? ''
  const type = m.get(F.valueInfo.type)?.[0]
  const tensor = type instanceof Uint8Array ? fields(type).get(F.type.tensor)?.[0] : undefined
  if (!(tensor instanceof Uint8Array)) return { name, type: 'non-tensor', shape: [] }
  const t = fields(tensor)
  const elem = Number(t.get(F.tensorType.elemType)?.[0] ?? 0)
  const shapeBytes = t.get(F.tensorType.shape)?.[0]
  const shape: (number | string)[] = []
  if (shapeBytes instanceof Uint8Array) {
    for (const d of fields(shapeBytes).get(F.shape.dim) ?? []) {
      const dim = fields(d as Uint8Array)
      const value = dim.get(F.dim.value)?.[0]
      shape.push(typeof value === 'number' ? value : (text(dim.get(F.dim.param)?.[0]) ?? '?'))
    }
  }
  return { name, type: ELEMENT_TYPES[elem] ?? `onnx-type-${elem}`, shape }
}

/** One protobuf field of a message in memory: varints as numbers, length-delimited as bytes. */
export interface WireField {
  no: number
  wire: 0 | 2
  value: number | Uint8Array
}

/**
 * The fields of a small message in memory, in order (fixed-width fields are skipped: the
 * messages read here use none that matter). Throws `OnnxFormatError` on malformed bytes.
 */
export function readFields(b: Uint8Array): WireField[] {
  const out: WireField[] = []
  let pos = 0
  const varint = () => {
    let v = 0
    let scale = 1
    for (;;) {
      if (pos >= b.length) throw new OnnxFormatError('a varint runs past its message')
      const x = b[pos++]
      v += (x & 0x7f) * scale
      if (!(x & 0x80)) return v
      scale *= 128
    }
  }
  while (pos < b.length) {
    const tag = varint()
    const no = Math.floor(tag / 8)
    const wire = tag % 8
    if (wire === 0) out.push({ no, wire, value: varint() })
    else if (wire === 2) {
      const len = varint()
      if (pos + len > b.length) throw new OnnxFormatError('a field runs past its message')
      out.push({ no, wire, value: b.subarray(pos, pos + len) })
      pos += len
    } else if (wire === 1 || wire === 5) pos += wire === 1 ? 8 : 4
    else throw new OnnxFormatError(`unsupported protobuf wire type ${wire}`)
  }
  return out
}

/** `readFields` grouped by field number. */
function fields(b: Uint8Array): Map<number, (number | Uint8Array)[]> {
  const out = new Map<number, (number | Uint8Array)[]>()
  for (const { no, value } of readFields(b)) {
    const list = out.get(no)
    if (list) list.push(value)
    else out.set(no, [value])
  }
  return out
}

function text(v: number | Uint8Array | undefined): string | undefined {
  return v instanceof Uint8Array ? new TextDecoder().decode(v) : undefined
}
