/**
 * @module
 * The wire format between the edge and the GPU backend service, shared by both sides.
 *
 * Request: `POST /v1/jobs`, body = u32 header length ‖ header JSON ‖ raw tensor bytes (binary,
 * never JSON arrays). Signed: `X-TTI-Signature: v1=<hex HMAC-SHA256(secret, ts "." path "." sha256(body))>`
 * with `X-TTI-Timestamp` (ms) inside a replay window. The backend keys runs by the SHA-256 of the
 * signed body (sent as `Idempotency-Key` too, for logs; never trusted), so a retry after a timeout
 * joins or reuses the first run instead of generating twice, and no header can point one job at
 * another's run. Manifests (`GET /v1/models/{id}/manifest`) are signed the same way, and so is
 * the answer (`signResponse`).
 *
 * Response: a stream of frames, kind byte ‖ u32 length ‖ payload: `P` progress JSON, `I` image
 * (u32 meta length ‖ meta JSON ‖ PNG bytes), `E` error JSON, `D` done, whose payload signs the
 * answer (`signAnswer`: the job's key and every image payload), so the edge caches no image that
 * the backend did not send for this job.
 */
import type { GenerateRequest, InputPicture, PictureField } from '../engine/types'
import type { Tensor, TensorType } from '../pipeline/tensor'
import { sha256Hex, toHex } from '../util'

/** How far a request's timestamp may be from the backend's clock. */
export const SIGNATURE_WINDOW_MS = 60_000
/** Header names of the protocol, in one place. */
export const HEADERS = Object.freeze({
  timestamp: 'x-tti-timestamp',
  signature: 'x-tti-signature',
  deadline: 'x-tti-deadline',
  idempotency: 'idempotency-key',
})
/** Content types of the protocol. */
export const JOB_CONTENT_TYPE = 'application/vnd.tti.job'
/** Content type of the framed response stream. */
export const FRAMES_CONTENT_TYPE = 'application/vnd.tti.frames'

/**
 * The JSON part of a denoise job: the edge's resolved request as it is, plus the model digest
 * (the backend refuses a digest it does not serve). No mapping of its own: the backend hands it
 * to the same local engine the edge would use.
 */
export type JobHeader = Omit<GenerateRequest, 'pictures'> & {
  digest: string
  /** Each picture's hash and size; its pixels are the tensor `picture_<field>`. */
  pictures?: Partial<Record<PictureField, Omit<InputPicture, 'data'>>>
}

/**
 * The job of a request: its header plus `tensors` (the prompt's) and one uint8 tensor per
 * picture, `picture_<field>` ([H, W, 3]; a mask [H, W]). Pictures travel, not latents: the
 * backend runs the VAE encoder and ControlNet itself, drawing the posterior from the job's seed
 * in diffusers' order, and 8-bit pixels are what the edge decoded anyway (no edge-side encoder
 * output to trust, and no more bytes than the picture).
 */
export function jobOf(req: GenerateRequest, digest: string, tensors: Record<string, Tensor>): Job {
  const { pictures, ...rest } = req
  const header: JobHeader = { ...rest, digest }
  const all = { ...tensors }
  if (pictures && Object.keys(pictures).length) {
    header.pictures = {}
    for (const [field, p] of Object.entries(pictures) as [PictureField, InputPicture][]) {
      header.pictures[field] = { sha256: p.sha256, width: p.width, height: p.height }
      const dims = field === 'mask' ? [p.height, p.width] : [p.height, p.width, 3]
      all[`picture_${field}`] = { type: 'uint8', data: p.data, dims }
    }
  }
  return { header, tensors: all }
}

/** The request a job carries, its pictures rebuilt from their tensors (checked against the header). */
export function requestOf(job: Job): GenerateRequest {
  const { digest: _digest, pictures: meta, ...req } = job.header
  if (!meta) return req
  const pictures: GenerateRequest['pictures'] = {}
  for (const [field, p] of Object.entries(meta) as [PictureField, Omit<InputPicture, 'data'>][]) {
    if (!['image', 'mask', 'control_image'].includes(field))
      throw new ProtocolError(`unknown picture ${field}`)
    const t = job.tensors[`picture_${field}`]
    const dims = field === 'mask' ? [p.height, p.width] : [p.height, p.width, 3]
    if (!t || t.type !== 'uint8' || t.dims.join() !== dims.join())
      throw new ProtocolError(`picture_${field} must be uint8 [${dims.join(', ')}]`)
    pictures[field] = { ...p, data: t.data as Uint8Array }
  }
  return { ...req, pictures }
}

/**
 * A job: its header plus named tensors. With the text encoder at the edge: `prompt_embeds` and,
 * under guidance, `negative_prompt_embeds` (float32 [window, hidden]). With it on the backend
 * (`./placement`): `input_ids` (int32 [rows, window]; row 0 the prompt, row 1 the negative prompt
 * under guidance), padded exactly as the tokenizer pads them for the model.
 */
export interface Job {
  header: JobHeader
  tensors: Record<string, Tensor>
}

interface TensorEntry {
  name: string
  type: TensorType
  dims: readonly number[]
  offset: number
  length: number
}

const BYTES: Record<TensorType, number> = {
  float32: 4,
  float16: 2,
  float64: 8,
  int32: 4,
  int64: 8,
  uint8: 1,
}

/** Serialises a job. */
export function encodeJob(job: Job): Uint8Array {
  const entries: TensorEntry[] = []
  let offset = 0
  for (const [name, t] of Object.entries(job.tensors)) {
    entries.push({ name, type: t.type, dims: t.dims, offset, length: t.data.byteLength })
    offset += t.data.byteLength
  }
  const head = new TextEncoder().encode(JSON.stringify({ ...job.header, tensors: entries }))
  const out = new Uint8Array(4 + head.length + offset)
  new DataView(out.buffer).setUint32(0, head.length)
  out.set(head, 4)
  for (const e of entries) {
    const t = job.tensors[e.name]
    out.set(
      new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      4 + head.length + e.offset,
    )
  }
  return out
}

/** Error for a malformed job body. */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

/** Parses a job, validating every tensor's extent. */
export function decodeJob(body: Uint8Array): Job {
  if (body.length < 4) throw new ProtocolError('job body too short')
  const headLen = new DataView(body.buffer, body.byteOffset).getUint32(0)
  if (4 + headLen > body.length) throw new ProtocolError('job header overruns the body')
  let parsed: JobHeader & { tensors: TensorEntry[] }
  try {
    parsed = JSON.parse(new TextDecoder().decode(body.subarray(4, 4 + headLen)))
  } catch {
    throw new ProtocolError('job header is not JSON')
  }
  const { tensors: entries, ...header } = parsed
  const data = body.subarray(4 + headLen)
  const tensors: Record<string, Tensor> = {}
  for (const e of entries ?? []) {
    const size = Object.hasOwn(BYTES, e.type) ? BYTES[e.type] : 0
    const numel = e.dims.reduce((a, b) => a * b, 1)
    if (!size || numel * size !== e.length || e.offset < 0 || e.offset + e.length > data.length) {
      throw new ProtocolError(`tensor ${e.name} has a bad type or extent`)
    }
    const bytes = data.slice(e.offset, e.offset + e.length) // copy: aligned for typed arrays
    const ctor = {
      float32: Float32Array,
      float16: Uint16Array,
      float64: Float64Array,
      int32: Int32Array,
      int64: BigInt64Array,
      uint8: Uint8Array,
    }[e.type]
    tensors[e.name] = { type: e.type, dims: e.dims, data: new ctor(bytes.buffer) } as Tensor
  }
  return { header, tensors }
}

/** Encodes one response frame. */
export function frame(
  kind: 'P' | 'I' | 'E' | 'D',
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(5 + payload.length)
  out[0] = kind.charCodeAt(0)
  new DataView(out.buffer).setUint32(1, payload.length)
  out.set(payload, 5)
  return out
}

/** Encodes an image frame payload: meta JSON and PNG bytes. */
export function imagePayload(meta: object, png: Uint8Array): Uint8Array {
  const m = new TextEncoder().encode(JSON.stringify(meta))
  const out = new Uint8Array(4 + m.length + png.length)
  new DataView(out.buffer).setUint32(0, m.length)
  out.set(m, 4)
  out.set(png, 4 + m.length)
  return out
}

/** A decoded response frame. */
export type Frame =
  | { kind: 'P'; progress: { step: number; totalSteps: number; image: number } }
  | {
      kind: 'I'
      meta: { seed: number; width: number; height: number }
      png: Uint8Array
      /** The frame's payload as sent (what `signAnswer` covers). */
      payload: Uint8Array
    }
  | { kind: 'E'; error: { status: number; title: string; detail: string; type?: string } }
  | { kind: 'D'; signature: string }

/** Reads frames from a response body stream, rejecting on truncation or an unknown kind. */
export async function* readFrames(stream: ReadableStream<Uint8Array>): AsyncGenerator<Frame> {
  const reader = stream.getReader()
  let buf = new Uint8Array(0)
  const dec = new TextDecoder()
  for (;;) {
    while (buf.length >= 5) {
      const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1)
      if (buf.length < 5 + len) break
      const kind = String.fromCharCode(buf[0])
      const payload = buf.slice(5, 5 + len)
      buf = buf.slice(5 + len)
      if (kind === 'P') yield { kind, progress: JSON.parse(dec.decode(payload)) }
      else if (kind === 'E') yield { kind, error: JSON.parse(dec.decode(payload)) }
      else if (kind === 'D') yield { kind, signature: dec.decode(payload) }
      else if (kind === 'I') {
        const ml = new DataView(payload.buffer).getUint32(0)
        yield {
          kind,
          meta: JSON.parse(dec.decode(payload.subarray(4, 4 + ml))),
          png: payload.slice(4 + ml),
          payload,
        }
      } else throw new ProtocolError(`unknown frame kind ${JSON.stringify(kind)}`)
    }
    const { done, value } = await reader.read()
    if (done) {
      if (buf.length) throw new ProtocolError('response ended inside a frame')
      return
    }
    const next = new Uint8Array(buf.length + value.length)
    next.set(buf)
    next.set(value, buf.length)
    buf = next
  }
}

async function hmac(secret: string, message: string): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  )
  return new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(message)))
}

/** The signature header value for a request. */
export async function signRequest(
  secret: string,
  timestamp: number,
  path: string,
  body: Uint8Array,
): Promise<string> {
  return `v1=${toHex(await hmac(secret, `${timestamp}.${path}.${await sha256Hex(body)}`))}`
}

/**
 * The signature of a backend's answer (a model manifest): the same HMAC over
 * `response.` + timestamp + path + body hash, so no request signature can pass as an answer's.
 */
export async function signResponse(
  secret: string,
  timestamp: number,
  path: string,
  body: Uint8Array,
): Promise<string> {
  return `v1=${toHex(await hmac(secret, `response.${timestamp}.${path}.${await sha256Hex(body)}`))}`
}

/**
 * The signature of a job's answer, carried by its `D` frame: HMAC over `answer.` + the job's key
 * (the SHA-256 of its signed body) + the SHA-256 of its image payloads in order.
 */
export async function signAnswer(
  secret: string,
  jobKey: string,
  images: readonly Uint8Array[],
): Promise<string> {
  const all = new Uint8Array(images.reduce((n, b) => n + b.length, 0))
  let at = 0
  for (const b of images) all.set(b, (at += b.length) - b.length)
  return `v1=${toHex(await hmac(secret, `answer.${jobKey}.${await sha256Hex(all)}`))}`
}

/** Whether `signature` signs this answer (constant time). */
export async function verifyAnswer(
  secret: string,
  jobKey: string,
  images: readonly Uint8Array[],
  signature: string,
): Promise<boolean> {
  return constantTimeEqual(await signAnswer(secret, jobKey, images), signature)
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a)
  const y = new TextEncoder().encode(b)
  if (x.length !== y.length) return false
  let diff = 0
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i]
  return diff === 0
}

/** Why a signature check failed, or `ok`. */
export type SignatureCheck = 'ok' | 'missing' | 'expired' | 'invalid'

/** Verifies a request signature in constant time and within the replay window. */
export const verifyRequest = verifier(signRequest)

/** Verifies an answer's signature (`signResponse`) in constant time and within the window. */
export const verifyResponse = verifier(signResponse)

/** The signature headers as received. */
export interface SignatureHeaders {
  timestamp: string | null | undefined
  signature: string | null | undefined
}

/** A constant-time check of the signatures `sign` makes, within the replay window. */
function verifier(
  sign: (secret: string, timestamp: number, path: string, body: Uint8Array) => Promise<string>,
) {
  return (
    secret: string,
    headers: SignatureHeaders,
    path: string,
    body: Uint8Array,
    now = Date.now(),
  ): Promise<SignatureCheck> => verify(headers, now, (ts) => sign(secret, ts, path, body))
}

/**
 * What can be checked of a signature before the body is read: both headers present, and the
 * timestamp inside the replay window.
 */
export function checkSignatureHeaders(headers: SignatureHeaders, now = Date.now()): SignatureCheck {
  if (!headers.timestamp || !headers.signature) return 'missing'
  const ts = Number(headers.timestamp)
  return Number.isFinite(ts) && Math.abs(now - ts) <= SIGNATURE_WINDOW_MS ? 'ok' : 'expired'
}

async function verify(
  headers: SignatureHeaders,
  now: number,
  sign: (ts: number) => Promise<string>,
): Promise<SignatureCheck> {
  const early = checkSignatureHeaders(headers, now)
  if (early !== 'ok') return early
  const want = await sign(Number(headers.timestamp))
  return constantTimeEqual(want, headers.signature as string) ? 'ok' : 'invalid'
}
