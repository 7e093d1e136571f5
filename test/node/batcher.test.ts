/**
 * The GPU backend's job batcher (`src/backend/batcher.ts`) with stand-in runs: which jobs share a
 * batch, queue positions while a group waits, and members leaving before it starts. The batches
 * themselves, on real ONNX sessions, are tested in `gpu-backend.test.ts` and `batch.test.ts`.
 */
import { describe, expect, it } from 'vitest'
import { checkBatchOptions, JobBatcher } from '../../src/backend/batcher'
import { GenerationQueue } from '../../src/engine/queue'

/** A batcher whose runs are held open until `release()`; records each batch's jobs. */
function harness(maxJobs: number, windowMs = 0) {
  const queue = new GenerationQueue({ concurrency: 1, maxWaiting: 4, pollMs: 2 })
  const batches: string[][] = []
  let release!: () => void
  let gate = new Promise<void>((r) => (release = r))
  const batcher = new JobBatcher<string, string>(queue, { maxJobs, windowMs }, (jobs) => {
    batches.push(jobs)
    return jobs.map(async (j) => {
      await gate
      return `done ${j}`
    })
  })
  const submit = (key: string, job: string, signal = new AbortController().signal) => {
    const positions: number[] = []
    const result = batcher.submit(key, job, {
      signal,
      onQueued: (p) => positions.push(p),
    })
    result.catch(() => undefined)
    return { result, positions }
  }
  return {
    queue,
    batcher,
    batches,
    submit,
    release: () => {
      release()
      gate = new Promise<void>((r) => (release = r))
    },
  }
}

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms))

describe('job batcher', () => {
  it('takes whatever waits while the slot is busy, up to maxJobs, per key', async () => {
    const h = harness(3)
    const first = h.submit('a', 'a1') // the slot is free: it starts at once, alone
    await tick()
    const waiting = ['a2', 'a3', 'a4', 'a5'].map((j) => h.submit('a', j))
    const other = h.submit('b', 'b1')
    expect(h.batcher.canJoin('a')).toBe(true) // a5 opened the next group of a
    await tick()
    expect(h.batches).toEqual([['a1']])
    h.release()
    expect(await first.result).toBe('done a1')
    await tick(30)
    h.release()
    await tick(30)
    h.release()
    await tick(30)
    h.release()
    expect(await Promise.all([...waiting, other].map((w) => w.result))).toEqual([
      'done a2',
      'done a3',
      'done a4',
      'done a5',
      'done b1',
    ])
    expect(h.batches).toEqual([['a1'], ['a2', 'a3', 'a4'], ['a5'], ['b1']])
    // Each member of a waiting group heard the group's place in the queue.
    expect(waiting[0].positions[0]).toBe(1)
    expect(waiting[2].positions[0]).toBe(1)
    expect(other.positions[0]).toBe(3)
  })

  it('collects for the window before asking for a slot', async () => {
    const h = harness(8, 40)
    const jobs = ['x1', 'x2'].map((j) => h.submit('x', j))
    await tick(10)
    jobs.push(h.submit('x', 'x3'))
    await tick(60)
    h.release()
    await Promise.all(jobs.map((j) => j.result))
    expect(h.batches).toEqual([['x1', 'x2', 'x3']])
  })

  it('drops members that left before their group started, and a group all of whose members left', async () => {
    const h = harness(4)
    const busy = h.submit('a', 'busy')
    await tick()
    const gone = new AbortController()
    const leaving = h.submit('a', 'leaving', gone.signal)
    const staying = h.submit('a', 'staying')
    const lonely = new AbortController()
    const alone = h.submit('b', 'alone', lonely.signal)
    await tick()
    expect(h.queue.depth).toEqual({ running: 1, waiting: 2 })
    gone.abort(new Error('client gone'))
    lonely.abort(new Error('client gone too'))
    await tick(20)
    // b's group left the queue; a's waits with one member left.
    expect(h.queue.depth).toEqual({ running: 1, waiting: 1 })
    expect(h.batcher.canJoin('b')).toBe(false)
    await expect(leaving.result).rejects.toThrow('client gone')
    await expect(alone.result).rejects.toThrow('client gone too')
    h.release()
    await busy.result
    await tick(30)
    h.release()
    expect(await staying.result).toBe('done staying')
    expect(h.batches).toEqual([['busy'], ['staying']])
  })

  it('checks its options', () => {
    expect(() => checkBatchOptions({ maxJobs: 0 })).toThrow(/batch size/)
    expect(() => checkBatchOptions({ maxJobs: 2, windowMs: -1 })).toThrow(/batch window/)
    expect(checkBatchOptions({ maxJobs: 2 })).toEqual({ maxJobs: 2, windowMs: 0 })
  })
})
