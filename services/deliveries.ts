// The BullMQ queues behind push notifications and webhooks, and their workers
// (in the API process, or in `npm run worker`).
//
//   stored message change ──► `events` job (id: conversation + change number)
//                                 ├─► `webhooks` job per webhook (id: webhook + event id), retried with back-off
//                                 └─► `push` job per offline member with a device (id: user + conversation, delayed: bursts collapse)
//
// A send only adds the one `events` job (one Redis round trip); everything
// that reads more (webhooks of the conversation, members' devices, presence)
// happens in the worker, off the request.
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { StoredChange } from './messages.js'
import { logOncePerMinute } from './mail.js'
import type { PushJob, PushService } from './push.js'
import type { WebhookJob, WebhookService } from './webhooks.js'

export const EVENTS_QUEUE = 'events'
export const PUSH_QUEUE = 'push'
export const WEBHOOKS_QUEUE = 'webhooks'

export interface EventJob extends StoredChange { at: string }

export interface DeliveryQueues {
  events: Queue<EventJob>
  push: Queue<PushJob>
  webhooks: Queue<WebhookJob>
}

export interface DeliverySettings {
  /** A new connection of its own for each worker (they block on Redis). */
  connection: (name: string) => ConnectionOptions
  prefix: string
  collapseMs: number
  webhookAttempts: number
  webhookBackoffMs: number
}

/** The three queues share one connection (queues never block on it). */
export function createDeliveryQueues ({ connection, prefix, webhookAttempts, webhookBackoffMs }: Omit<DeliverySettings, 'connection' | 'collapseMs'> & { connection: ConnectionOptions }): DeliveryQueues {
  const failedKept = { age: 7 * 24 * 3600, count: 1000 }
  return {
    events: new Queue<EventJob>(EVENTS_QUEUE, {
      connection,
      prefix,
      defaultJobOptions: { attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: failedKept }
    }),
    // A failed push is not kept: its id would hold back the next message's push.
    push: new Queue<PushJob>(PUSH_QUEUE, {
      connection,
      prefix,
      defaultJobOptions: { attempts: 4, backoff: { type: 'exponential', delay: 5000 }, removeOnComplete: true, removeOnFail: true }
    }),
    // Failed deliveries keep their id for a week: the same event is not queued twice.
    webhooks: new Queue<WebhookJob>(WEBHOOKS_QUEUE, {
      connection,
      prefix,
      defaultJobOptions: { attempts: webhookAttempts, backoff: { type: 'exponential', delay: webhookBackoffMs }, removeOnComplete: { age: 24 * 3600, count: 10000 }, removeOnFail: failedKept }
    })
  }
}

/** Queues the delivery work of one stored change: idempotent by conversation and change number. */
export async function enqueueStored (queues: DeliveryQueues, change: StoredChange): Promise<void> {
  const { conversationId, changeSeq } = change.message
  await queues.events.add(change.type, { ...change, at: new Date().toISOString() }, { jobId: `ev-${conversationId}-${changeSeq}` })
}

export function createDeliveryWorkers (deps: DeliverySettings & {
  queues: DeliveryQueues
  push: PushService
  webhooks: WebhookService
  log: FastifyBaseLogger
}): Array<Worker<unknown>> {
  const { connection, prefix, queues, push, webhooks, log, collapseMs } = deps

  const events = new Worker<EventJob>(EVENTS_QUEUE, async (job: Job<EventJob>) => {
    const { type, message, memberIds, actorId, at } = job.data
    const event = { id: `${message.conversationId}.${message.changeSeq}`, type, conversationId: message.conversationId, createdAt: at, data: { message } }
    const targets = await webhooks.targets(message.conversationId, type)
    await Promise.all(targets.map((webhookId) => queues.webhooks.add(type, { webhookId, event }, { jobId: `wh-${webhookId}-${event.id}` })))
    if (type === 'message.created') {
      await push.plan(message.conversationId, memberIds, actorId, async (pushJob, jobId) => {
        await queues.push.add('notify', pushJob, { jobId, delay: collapseMs })
      })
    }
  }, { connection: connection('events-worker'), prefix, concurrency: 8 })

  const pushes = new Worker<PushJob>(PUSH_QUEUE, async (job: Job<PushJob>) => {
    const outcome = await push.deliver(job.data, async (subscriptionId) => {
      await job.updateData({ ...job.data, sent: [...(job.data.sent ?? []), subscriptionId] })
    })
    log.debug({ jobId: job.id, outcome }, 'push job done')
    return outcome
  }, { connection: connection('push-worker'), prefix, concurrency: 8 })

  const deliveries = new Worker<WebhookJob>(WEBHOOKS_QUEUE, async (job: Job<WebhookJob>) => {
    const attempt = job.attemptsMade + 1
    await webhooks.deliver(job.data, attempt, attempt >= (job.opts.attempts ?? 1))
  }, { connection: connection('webhooks-worker'), prefix, concurrency: 16 })

  const workers = [events, pushes, deliveries] as Array<Worker<unknown>>
  for (const worker of workers) {
    worker.on('failed', (job, err) => log.warn({ queue: worker.name, jobId: job?.id, attempt: job?.attemptsMade, err: { message: err.message } }, 'delivery job failed'))
    worker.on('error', logOncePerMinute(log, 'delivery worker error', { queue: worker.name }))
  }
  return workers
}
