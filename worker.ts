// `npm run worker`: the background workers as their own process, for
// deployments that run the API with EMAIL_WORKER=false and EVENT_WORKER=false:
// email, Web Push and webhooks. Same configuration as the server.
import { readFileSync } from 'node:fs'
import closeWithGrace from 'close-with-grace'
import { MongoClient } from 'mongodb'
import pino from 'pino'
import { loadConfig } from './schemas/config.js'
import { createEmailWorker, createMailTransport } from './services/mail.js'
import { openRedis, queuePrefix, type RedisClient } from './services/redis-client.js'
import { createOutbound } from './services/outbound.js'
import { createPushService, resolveVapidKeys } from './services/push.js'
import { createWebhookService } from './services/webhooks.js'
import { createDeliveryTargets } from './services/delivery-targets.js'
import { createDeliveryQueues, createDeliveryWorkers } from './services/deliveries.js'

const config = loadConfig()
const log = pino({ level: config.LOG_LEVEL, name: 'parley-worker' })
const target = { url: config.REDIS_URL, clusterNodes: config.redisClusterNodes }
const prefix = queuePrefix(config.REDIS_PREFIX)
const connections: RedisClient[] = []
const connection = (name: string, options: { keyPrefix?: string } = {}): RedisClient => {
  const opened = openRedis(target, { maxRetriesPerRequest: null, connectionName: `parley:${name}`, ...options })
  connections.push(opened)
  return opened
}
const redis = connection('worker-commands', { keyPrefix: `${config.REDIS_PREFIX}:` })

const transport = createMailTransport(config.SMTP_URL, config.MAIL_CAPTURE_DIR)
const emailWorker = createEmailWorker({ connection: connection('email-worker'), prefix, transport, from: config.MAIL_FROM, redis, log })
log.info(`email worker started; mail goes to ${transport.describe}`)

const mongo = new MongoClient(config.MONGODB_URI, { appName: 'parley-worker', maxPoolSize: 20 })
await mongo.connect()
const db = mongo.db(config.MONGODB_DB)
const outbound = createOutbound({
  allowPrivate: config.OUTBOUND_ALLOW_PRIVATE,
  allowedAddresses: config.outboundAllowedAddresses,
  ...(config.OUTBOUND_CA_FILE ? { extraCa: readFileSync(config.OUTBOUND_CA_FILE, 'utf8') } : {})
})
const targets = createDeliveryTargets({ db, redis })
const push = createPushService({ db, redis, targets, vapid: await resolveVapidKeys(redis, config), outbound, timeoutMs: config.WEBHOOK_TIMEOUT_MS })
const webhooks = createWebhookService({ db, redis, targets, outbound, timeoutMs: config.WEBHOOK_TIMEOUT_MS, disableAfter: config.WEBHOOK_DISABLE_AFTER })
const settings = { connection, prefix, collapseMs: config.PUSH_COLLAPSE_MS, webhookAttempts: config.WEBHOOK_ATTEMPTS, webhookBackoffMs: config.WEBHOOK_BACKOFF_MS }
const queues = createDeliveryQueues({ ...settings, connection: connection('delivery-queues') })
const deliveryWorkers = createDeliveryWorkers({ ...settings, queues, push, webhooks, log })
log.info('push and webhook workers started')

closeWithGrace({ delay: 10000, logger: log }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'worker stopping after an error')
  else log.info({ signal }, 'worker stopping: finishing the jobs in hand')
  await Promise.allSettled([emailWorker.close(), ...deliveryWorkers.map((w) => w.close())])
  await Promise.allSettled([queues.events.close(), queues.push.close(), queues.webhooks.close()])
  transport.close()
  outbound.close()
  await mongo.close()
  await Promise.allSettled(connections.map((c) => c.quit()))
})
