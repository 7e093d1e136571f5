/**
 * @module
 * The Queue consumers. JOBS: each message names an accepted job's request key; its coordinator
 * runs it (`runJob`), and a retryable failure (a backend down, an engine full) is retried with
 * the delay the coordinator computed. WEBHOOKS: each message is one signed delivery, retried
 * with doubling delays until the target answers 2xx or the queue's `max_retries` runs out.
 */
import { coordinator } from '../bindings'
import { findKey } from '../keys/api-keys'
import { secondsSetting } from './settings'
import {
  allowsPrivateTargets,
  webhookBackoffSeconds,
  webhookHeaders,
  webhookTargetProblem,
  type WebhookMessage,
} from '../webhooks/webhooks'

/** A JOBS message. */
export interface JobMessage {
  requestKey: string
}

/** How long one webhook attempt may take before it counts as failed. */
const WEBHOOK_TIMEOUT_MS = 10_000

/** Handles a batch of either queue (told apart by the producer binding's queue name). */
export async function consumeQueue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  if (batch.queue.endsWith('-webhooks')) {
    await Promise.all(
      (batch.messages as readonly Message<WebhookMessage>[]).map((m) => deliver(m, env)),
    )
    return
  }
  for (const m of batch.messages as readonly Message<JobMessage>[]) await runJob(m, env)
}

async function runJob(message: Message<JobMessage>, env: Env): Promise<void> {
  try {
    const result = await coordinator(env, message.body.requestKey).runJob()
    if (result.done) message.ack()
    else message.retry({ delaySeconds: Math.ceil(result.retryAfterSeconds) })
  } catch (e) {
    // The coordinator itself failed (an RPC or storage error): its record still holds the job.
    console.error(`job ${message.body.requestKey}: run failed`, e)
    message.retry({ delaySeconds: 5 })
  }
}

async function deliver(message: Message<WebhookMessage>, env: Env): Promise<void> {
  const m = message.body
  const record = await findKey({ kv: env.KEYS }, m.keyId)
  // A revoked key has no secret any more: nothing can be signed for it, so nothing is sent.
  const problem = !record?.webhook_secret
    ? 'the key has no webhook secret (revoked?)'
    : webhookTargetProblem(m.url, allowsPrivateTargets(env))
  if (problem) {
    console.warn(`webhook ${m.id} to ${m.url} dropped: ${problem}`)
    message.ack()
    return
  }
  try {
    const res = await fetch(m.url, {
      method: 'POST',
      headers: await webhookHeaders(record!.webhook_secret!, m),
      body: m.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    })
    await res.body?.cancel()
    if (res.ok) {
      message.ack()
      return
    }
    console.warn(`webhook ${m.id} to ${m.url}: ${res.status}, attempt ${message.attempts}`)
  } catch (e) {
    console.warn(`webhook ${m.id} to ${m.url}: ${e}, attempt ${message.attempts}`)
  }
  message.retry({
    delaySeconds: webhookBackoffSeconds(
      message.attempts,
      secondsSetting(env, 'WEBHOOK_RETRY_BASE_SECONDS'),
    ),
  })
}
