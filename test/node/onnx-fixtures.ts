/**
 * Builds variants of a real (tiny) ONNX model for the loading and dtype tests, by editing its
 * protobuf: weights moved to external data (one file, per-tensor files, or numbered shards),
 * float16 graph inputs/outputs (Cast nodes at the boundary), float16 weights behind float32 I/O,
 * and a float16 VAE whose output overflows. The graphs stay real: ONNX Runtime runs every one.
 * Field numbers are onnx.proto's.
 */
import { readFields, type WireField } from '../../src/pipeline/onnx-metadata'
import { float32ToHalfBits } from '../../src/pipeline/tensor'

type Value = number | Uint8Array
/** A message as its fields in order: field number, wire type (0 varint, 2 bytes) and value. */
type Fields = WireField[]

/**
 * A message's fields, in order (the reader the pipeline uses for ONNX metadata). It skips
 * fixed-width fields, which none of the messages edited here has: re-encoding proves it.
 */
function decode(b: Uint8Array): Fields {
  const fields = readFields(b)
  if (encode(fields).length !== b.length) throw new Error('a message with fixed-width fields')
  return fields
}

function varintBytes(v: number): number[] {
  const out: number[] = []
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v > 0) byte |= 0x80
    out.push(byte)
  } while (v > 0)
  return out
}

function encode(fields: Fields): Uint8Array {
  const parts: Uint8Array[] = []
  for (const f of fields) {
    parts.push(new Uint8Array(varintBytes(f.no * 8 + f.wire)))
    if (f.wire === 0) parts.push(new Uint8Array(varintBytes(f.value as number)))
    else {
      const v = f.value as Uint8Array
      parts.push(new Uint8Array(varintBytes(v.length)), v)
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

const str = (s: string) => new TextEncoder().encode(s)
const text = (v: Value) => new TextDecoder().decode(v as Uint8Array)
const bytesField = (no: number, value: Uint8Array | string) => ({
  no,
  wire: 2 as const,
  value: typeof value === 'string' ? str(value) : value,
})
const intField = (no: number, value: number) => ({ no, wire: 0 as const, value })

const MODEL_GRAPH = 7
const G = { node: 1, initializer: 5, input: 11, output: 12 } as const
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5 } as const
const TENSOR = { dims: 1, dataType: 2, name: 8, raw: 9, external: 13, location: 14 } as const
const FLOAT = 1
const FLOAT16 = 10

/** Applies `fn` to the model's graph. */
function editGraph(model: Uint8Array, fn: (graph: Fields) => Fields): Uint8Array {
  return encode(
    decode(model).map((f) =>
      f.no === MODEL_GRAPH ? bytesField(MODEL_GRAPH, encode(fn(decode(f.value as Uint8Array)))) : f,
    ),
  )
}

/** Where `externalize` puts the weights. */
export type ExternalLayout = 'single' | 'per-tensor' | 'shards'

/**
 * Moves every initializer of at least `minBytes` out of the model, as optimum (`single`:
 * `model.onnx_data`), old exporters (`per-tensor`: one file per tensor, named after it) or
 * sharded writers (`shards`: `model.onnx_data_0`, `_1`, … of a few tensors each) store them.
 */
export function externalize(
  model: Uint8Array,
  layout: ExternalLayout,
  minBytes = 64,
): { model: Uint8Array; files: Record<string, Uint8Array> } {
  const chunks: Record<string, Uint8Array[]> = {}
  const sizes: Record<string, number> = {}
  let count = 0
  const edited = editGraph(model, (graph) =>
    graph.map((f) => {
      if (f.no !== G.initializer) return f
      const tensor = decode(f.value as Uint8Array)
      const raw = tensor.find((t) => t.no === TENSOR.raw)
      if (!raw || (raw.value as Uint8Array).length < minBytes) return f
      const name = text(tensor.find((t) => t.no === TENSOR.name)!.value)
      const location =
        layout === 'single'
          ? 'model.onnx_data'
          : layout === 'per-tensor'
            ? name.replace(/[^\w.-]/g, '_')
            : `model.onnx_data_${Math.floor(count / 4)}`
      count++
      const data = raw.value as Uint8Array
      const offset = sizes[location] ?? 0
      ;(chunks[location] ??= []).push(data)
      sizes[location] = offset + data.length
      const entry = (k: string, v: string) =>
        bytesField(TENSOR.external, encode([bytesField(1, k), bytesField(2, v)]))
      return bytesField(
        G.initializer,
        encode([
          ...tensor.filter((t) => t.no !== TENSOR.raw),
          entry('location', location),
          entry('offset', String(offset)),
          entry('length', String(data.length)),
          intField(TENSOR.location, 1),
        ]),
      )
    }),
  )
  const files = Object.fromEntries(
    Object.entries(chunks).map(([loc, parts]) => {
      const out = new Uint8Array(sizes[loc])
      let o = 0
      for (const p of parts) {
        out.set(p, o)
        o += p.length
      }
      return [loc, out]
    }),
  )
  return { model: edited, files }
}

function castNode(input: string, output: string, to: number): Fields[number] {
  const attr = encode([bytesField(1, 'to'), intField(3, to), intField(20, 2)])
  return bytesField(
    G.node,
    encode([
      bytesField(NODE.input, input),
      bytesField(NODE.output, output),
      bytesField(NODE.name, `cast_${output}`),
      bytesField(NODE.opType, 'Cast'),
      bytesField(NODE.attribute, attr),
    ]),
  )
}

/** Renames `from` to `to` among a node's inputs (and outputs, where `outputs`). */
function renameInNode(node: Uint8Array, from: string, to: string, outputs: boolean): Uint8Array {
  return encode(
    decode(node).map((f) =>
      (f.no === NODE.input || (outputs && f.no === NODE.output)) && text(f.value) === from
        ? bytesField(f.no, to)
        : f,
    ),
  )
}

/** Sets the element type of a graph input or output `ValueInfoProto`. */
function withElemType(valueInfo: Uint8Array, elem: number): Uint8Array {
  return encode(
    decode(valueInfo).map((f) => {
      if (f.no !== 2) return f // type
      const type = decode(f.value as Uint8Array).map((t) => {
        if (t.no !== 1) return t // tensor_type
        const tensor = decode(t.value as Uint8Array).map((x) =>
          x.no === 1 ? intField(1, elem) : x,
        )
        return bytesField(1, encode(tensor))
      })
      return bytesField(2, encode(type))
    }),
  )
}

const valueName = (v: Value) => text(decode(v as Uint8Array).find((f) => f.no === 1)!.value)

/**
 * Makes the named float32 graph inputs and outputs float16, with Cast nodes at the boundary (the
 * graph inside stays float32), as WebGPU exports of SD-Turbo ship them. `outputScale` multiplies
 * the outputs before their cast, to make a float16 output overflow.
 */
export function float16Interface(
  model: Uint8Array,
  names: { inputs: string[]; outputs: string[] },
  outputScale?: number,
): Uint8Array {
  return editGraph(model, (graph) => {
    let nodes = graph.filter((f) => f.no === G.node).map((f) => f.value as Uint8Array)
    const rest = graph.filter((f) => f.no !== G.node)
    const head: Fields = []
    const tail: Fields = []
    const extraInits: Fields = []
    for (const input of names.inputs) {
      nodes = nodes.map((n) => renameInNode(n, input, `${input}__f32`, false))
      head.push(castNode(input, `${input}__f32`, FLOAT))
    }
    for (const output of names.outputs) {
      nodes = nodes.map((n) => renameInNode(n, output, `${output}__f32`, true))
      let source = `${output}__f32`
      if (outputScale !== undefined) {
        const scale = new Uint8Array(new Float32Array([outputScale]).buffer)
        extraInits.push(
          bytesField(
            G.initializer,
            encode([
              intField(TENSOR.dataType, FLOAT),
              bytesField(TENSOR.name, `${output}__scale`),
              bytesField(TENSOR.raw, scale),
            ]),
          ),
        )
        tail.push(
          bytesField(
            G.node,
            encode([
              bytesField(NODE.input, source),
              bytesField(NODE.input, `${output}__scale`),
              bytesField(NODE.output, `${output}__scaled`),
              bytesField(NODE.name, `scale_${output}`),
              bytesField(NODE.opType, 'Mul'),
            ]),
          ),
        )
        source = `${output}__scaled`
      }
      tail.push(castNode(source, output, FLOAT16))
    }
    const io = rest.map((f) =>
      (f.no === G.input && names.inputs.includes(valueName(f.value))) ||
      (f.no === G.output && names.outputs.includes(valueName(f.value)))
        ? bytesField(f.no, withElemType(f.value as Uint8Array, FLOAT16))
        : f,
    )
    return [...head, ...nodes.map((n) => bytesField(G.node, n)), ...tail, ...io, ...extraInits]
  })
}

/**
 * Stores every float32 initializer as float16, each followed by a Cast back to float32, so the
 * graph's interface stays float32 (fp16 weights behind fp32 I/O, as half-precision exports with
 * `keep_io_types` are).
 */
export function float16Weights(model: Uint8Array): Uint8Array {
  return editGraph(model, (graph) => {
    const casts: Fields = []
    const out = graph.map((f) => {
      if (f.no !== G.initializer) return f
      const tensor = decode(f.value as Uint8Array)
      const type = tensor.find((t) => t.no === TENSOR.dataType)?.value
      const raw = tensor.find((t) => t.no === TENSOR.raw)
      if (type !== FLOAT || !raw) return f
      const name = text(tensor.find((t) => t.no === TENSOR.name)!.value)
      const r = raw.value as Uint8Array
      const values = new Float32Array(r.slice().buffer)
      const half = new Uint8Array(float32ToHalfBits(values).buffer)
      casts.push(castNode(`${name}__f16`, name, FLOAT))
      return bytesField(
        G.initializer,
        encode(
          tensor.map((t) =>
            t.no === TENSOR.dataType
              ? intField(TENSOR.dataType, FLOAT16)
              : t.no === TENSOR.name
                ? bytesField(TENSOR.name, `${name}__f16`)
                : t.no === TENSOR.raw
                  ? bytesField(TENSOR.raw, half)
                  : t,
          ),
        ),
      )
    })
    return [...casts, ...out]
  })
}

/** Declares a graph input with another element type (metadata only: the graph is not run). */
export function retypeInput(model: Uint8Array, input: string, elem: number): Uint8Array {
  return editGraph(model, (graph) =>
    graph.map((f) =>
      f.no === G.input && valueName(f.value) === input
        ? bytesField(G.input, withElemType(f.value as Uint8Array, elem))
        : f,
    ),
  )
}
