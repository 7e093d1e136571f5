/**
 * @module
 * Batching of concurrent generations: generations of one model that share the output size, the
 * scheduler (class and config) and the timesteps step in lockstep, and the UNet calls of one step
 * become one call, their rows concatenated along the batch axis (sample, timestep where it has one
 * value per row, encoder hidden states, ControlNet residuals), as diffusers batches the guidance
 * halves and `num_images_per_prompt`. Each generation keeps everything else of its own: prompts,
 * guidance scale, seeds and noise, scheduler state, conditioning and progress; one that stops
 * (aborted, failed, done) leaves, and the others go on without it.
 *
 * A seat is what one generation sees as its UNet: `run` waits until every seated generation has
 * sent its call for the step, runs the merged call, and hands each its own rows of the output.
 *
 * @example
 * const batch = new UnetBatch(model.unet, { sample: 'sample', timestep: 'timestep', timestepLayout: 'scalar' })
 * const [a, b] = [batch.seat(), batch.seat()] // one per generation, before any of them runs
 */
import type { TimestepInput } from './model'
import type { ModelSession, Tensor } from './tensor'

/** Which UNet inputs the batch needs to know by name: rows come from the sample. */
export interface BatchLayout {
  /** The latent input; its first axis is each generation's row count. */
  sample: string
  /** The timestep input: concatenated with a `batch` layout, otherwise shared (and checked equal). */
  timestep: string
  timestepLayout: TimestepInput['layout']
}

/** One generation's place in a `UnetBatch`: its UNet, and `leave` once it makes no more calls. */
export interface BatchSeat extends Pick<ModelSession, 'run'> {
  /** Leaves the batch (idempotent): the others stop waiting for this generation's calls. */
  leave(): void
}

/** A batch of calls that cannot be merged (a bug in forming the batch, not a bad request). */
export class BatchError extends Error {
  override name = 'BatchError'
}

interface Pending {
  feeds: Record<string, Tensor>
  names?: readonly string[]
  resolve(out: Record<string, Tensor>): void
  reject(e: unknown): void
}

/** Merges the per-step UNet calls of the generations seated at it. */
export class UnetBatch {
  readonly #session: Pick<ModelSession, 'run'>
  readonly #layout: BatchLayout
  /** Seats still making calls, in the order they were taken (the order of rows in a call). */
  readonly #seated: object[] = []
  readonly #pending = new Map<object, Pending>()
  /** Merged calls made, and the generations in each (for benchmarks and tests). */
  readonly calls: number[] = []

  /** A batch over `session`, whose inputs are named by `layout`. */
  constructor(session: Pick<ModelSession, 'run'>, layout: BatchLayout) {
    this.#session = session
    this.#layout = layout
  }

  /** Takes a seat; every seat must be taken before any of them calls `run`. */
  seat(): BatchSeat {
    const id = {}
    this.#seated.push(id)
    let left = false
    return {
      run: (feeds, names) => {
        if (left) return Promise.reject(new BatchError('this generation left its batch'))
        return new Promise((resolve, reject) => {
          this.#pending.set(id, { feeds, names, resolve, reject })
          this.#flushIfComplete()
        })
      },
      leave: () => {
        if (left) return
        left = true
        this.#seated.splice(this.#seated.indexOf(id), 1)
        this.#pending.get(id)?.reject(new BatchError('left the batch with a call pending'))
        this.#pending.delete(id)
        this.#flushIfComplete()
      },
    }
  }

  /** Runs the step once every seated generation has sent its call. */
  #flushIfComplete(): void {
    if (this.#pending.size === 0 || this.#pending.size < this.#seated.length) return
    const calls = this.#seated.map((id) => this.#pending.get(id)!)
    this.#pending.clear()
    this.calls.push(calls.length)
    this.#run(calls).catch((e) => calls.forEach((c) => c.reject(e)))
  }

  async #run(calls: Pending[]): Promise<void> {
    if (calls.length === 1) {
      // Alone (the others left): the very tensors it would send without a batch.
      calls[0].resolve(await this.#session.run(calls[0].feeds, calls[0].names))
      return
    }
    const { sample, timestep, timestepLayout } = this.#layout
    const first = calls[0]
    const names = Object.keys(first.feeds)
    const rows = calls.map((c) => c.feeds[sample].dims[0])
    const feeds: Record<string, Tensor> = {}
    for (const name of names) {
      const tensors = calls.map((c) => {
        const t = c.feeds[name]
        if (!t) throw new BatchError(`a generation sent no ${name} input`)
        return t
      })
      if (name === timestep && timestepLayout !== 'batch') {
        // One timestep for all rows: the batch is only valid if every generation is at it.
        if (tensors.some((t) => t.data[0] !== tensors[0].data[0]))
          throw new BatchError('generations at different timesteps cannot share a UNet call')
        feeds[name] = tensors[0]
      } else feeds[name] = concatRows(name, tensors)
    }
    if (calls.some((c) => Object.keys(c.feeds).length !== names.length))
      throw new BatchError('generations sent different UNet inputs')
    const out = await this.#session.run(feeds, first.names)
    const total = rows.reduce((a, b) => a + b, 0)
    let at = 0
    for (const [i, call] of calls.entries()) {
      const mine: Record<string, Tensor> = {}
      for (const [name, t] of Object.entries(out))
        mine[name] = sliceRows(name, t, total, at, rows[i])
      at += rows[i]
      call.resolve(mine)
    }
  }
}

type Storage = Tensor['data']

/** Tensors of one type and trailing shape, stacked along axis 0. */
function concatRows(name: string, tensors: Tensor[]): Tensor {
  const [first] = tensors
  const tail = first.dims.slice(1)
  let rows = 0
  let length = 0
  for (const t of tensors) {
    if (
      t.type !== first.type ||
      t.dims.length !== first.dims.length ||
      t.dims.some((d, k) => k > 0 && d !== first.dims[k])
    )
      throw new BatchError(
        `${name}: [${t.dims.join(', ')}] ${t.type} does not stack on [${first.dims.join(', ')}] ${first.type}`,
      )
    rows += t.dims[0]
    length += t.data.length
  }
  const Storage = first.data.constructor as new (n: number) => Storage
  const data = new Storage(length)
  let at = 0
  for (const t of tensors) {
    ;(data as { set(a: Storage, offset: number): void }).set(t.data, at)
    at += t.data.length
  }
  return { type: first.type, data, dims: [rows, ...tail] } as Tensor
}

/** Rows `[at, at + rows)` of an output whose first axis is the whole batch (a view, no copy). */
function sliceRows(name: string, t: Tensor, total: number, at: number, rows: number): Tensor {
  if (t.dims[0] !== total)
    throw new BatchError(`output ${name} has ${t.dims[0]} rows, not the batch's ${total}`)
  const size = t.data.length / total
  const data = t.data.subarray(at * size, (at + rows) * size)
  return { type: t.type, data, dims: [rows, ...t.dims.slice(1)] } as Tensor
}
