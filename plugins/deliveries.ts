import fp from 'fastify-plugin'
import { readFileSync } from 'node:fs'
import type { Queue, Worker } from 'bullmq'
import { Gauge } from 'prom-client'
import { queuePrefix } from '../services/redis-client.js'
import { createOutbound, type Outbound } from '../services/outbound.js'
import { createDeliveryTargets } from '../services/delivery-targets.js'
import { createPushService, resolveVapidKeys, type PushService } from '../services/push.js'
import { createWebhookService, type WebhookService } from '../services/webhooks.js'
import { createDeliveryQueues, createDeliveryWorkers, enqueueStored, type DeliveryQueues } from '../services/deliveries.js'
import type { StoredChange } from '../services/messages.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Web Push subscriptions and notifications. */
    push: PushService
    /** Outgoing webhooks of conversations. */
    webhooks: WebhookService
    /** Requests to user-chosen URLs, guarded against private addresses. */
    outbound: Outbound
    /** Queues the push notifications and webhook deliveries of a stored message change. */
    deliverStored: (change: StoredChange) => Promise<void>
  }
}

export default fp(async (fastify) => {
  const { config } = fastify
  const prefix = queuePrefix(config.REDIS_PREFIX)
  const outbound = createOutbound({
    allowPrivate: config.OUTBOUND_ALLOW_PRIVATE,
    allowedAddresses: config.outboundAllowedAddresses,
    ...(config.OUTBOUND_CA_FILE ? { extraCa: readFileSync(config.OUTBOUND_CA_FILE, 'utf8') } : {})
  })
  const targets = createDeliveryTargets({ db: fastify.mongo.db, redis: fastify.redis })
  const push = createPushService({
    db: fastify.mongo.db,
    redis: fastify.redis,
    targets,
    vapid: await resolveVapidKeys(fastify.redis, config),
    outbound,
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    onPush: (result) => fastify.metrics.pushes.inc({ result })
  })
  const webhooks = createWebhookService({ db: fastify.mongo.db, redis: fastify.redis, targets, outbound, timeoutMs: config.WEBHOOK_TIMEOUT_MS, disableAfter: config.WEBHOOK_DISABLE_AFTER, onAttempt: (ok) => fastify.metrics.webhookDeliveries.inc({ result: ok ? 'ok' : 'failed' }) })

  // Like the mailer: queues and workers start once the app has booted, so a
  // failed boot leaves no BullMQ connection behind.
  let queues: DeliveryQueues | undefined
  let workers: Array<Worker<unknown>> = []
  const settings = {
    connection: (name: string) => fastify.redisConnection(name, { maxRetriesPerRequest: null }),
    prefix,
    collapseMs: config.PUSH_COLLAPSE_MS,
    webhookAttempts: config.WEBHOOK_ATTEMPTS,
    webhookBackoffMs: config.WEBHOOK_BACKOFF_MS
  }
  fastify.addHook('onReady', async () => {
    queues = createDeliveryQueues({ ...settings, connection: fastify.redisConnection('delivery-queues', { maxRetriesPerRequest: 3 }) })
    const counted: Queue[] = [queues.events, queues.push, queues.webhooks]
    for (const queue of counted) queue.on('error', (err: Error) => fastify.log.warn({ err, queue: queue.name }, 'delivery queue error'))
    fastify.metrics.registry.registerMetric(new Gauge({
      name: 'parley_delivery_queue_jobs',
      help: 'Push and webhook jobs by queue and state, read from the queues when scraped',
      labelNames: ['queue', 'state'],
      registers: [],
      async collect () {
        for (const queue of counted) {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed').catch(() => undefined)
          for (const [state, n] of Object.entries(counts ?? {})) this.set({ queue: queue.name, state }, n)
        }
      }
    }))
    if (!config.EVENT_WORKER) return
    workers = createDeliveryWorkers({ ...settings, queues, push, webhooks, log: fastify.log.child({ component: 'delivery-worker' }) })
  })

  fastify.decorate('push', push)
  fastify.decorate('webhooks', webhooks)
  fastify.decorate('outbound', outbound)
  fastify.decorate('deliverStored', async (change: StoredChange) => {
    if (!queues) return
    try {
      // Most changes reach no webhook and no device: then no job at all.
      if (!await targets.anyFor(change.message.conversationId, change.type, change.memberIds.filter((id) => id !== change.actorId))) return
      await enqueueStored(queues, change)
    } catch (err) {
      // The change is stored and announced; only its push and webhooks are lost.
      fastify.log.warn({ err, type: change.type }, 'delivery jobs not queued')
    }
  })

  fastify.addHook('onClose', async () => {
    const redisUp = fastify.redis.status === 'ready'
    const all = [...workers, ...Object.values(queues ?? {})]
    if (redisUp) await Promise.race([Promise.allSettled(all.map((q) => q.waitUntilReady())), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
    const closing = Promise.allSettled([...workers.map((w) => w.close(!redisUp)), ...Object.values(queues ?? {}).map((q) => q.close())])
    await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, redisUp ? 5000 : 500).unref())])
    outbound.close()
  })
}, { name: 'deliveries', dependencies: ['config', 'db', 'redis', 'metrics'] })
