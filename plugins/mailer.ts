import fp from 'fastify-plugin'
import type { JobsOptions, Queue, Worker } from 'bullmq'
import { Gauge } from 'prom-client'
import { queuePrefix } from '../services/redis-client.js'
import { createEmailQueue, createEmailWorker, createMailTransport, type EmailJob } from '../services/mail.js'

declare module 'fastify' {
  interface FastifyInstance {
    mailer: {
      /**
       * Queues a mail. `jobId` makes it idempotent: the same id is queued and sent once.
       */
      enqueue: (jobId: string, mail: EmailJob, options?: JobsOptions) => Promise<void>
      /** The in-process worker (EMAIL_WORKER), once the app is ready. */
      readonly worker: Worker<EmailJob> | undefined
    }
  }
}

export default fp(async (fastify) => {
  const { REDIS_PREFIX, SMTP_URL, MAIL_CAPTURE_DIR, MAIL_FROM, EMAIL_WORKER, EMAIL_ATTEMPTS, EMAIL_BACKOFF_MS } = fastify.config
  const prefix = queuePrefix(REDIS_PREFIX)
  // The queue and the worker start once the whole app has booted: an app that
  // fails to boot must leave no half-initialised BullMQ connection behind.
  let queue: Queue<EmailJob> | undefined
  let worker: Worker<EmailJob> | undefined
  let closeTransport = (): void => {}
  fastify.addHook('onReady', async () => {
    queue = createEmailQueue({
      connection: fastify.redisConnection('email-queue', { maxRetriesPerRequest: 3 }),
      prefix,
      attempts: EMAIL_ATTEMPTS,
      backoffMs: EMAIL_BACKOFF_MS
    })
    queue.on('error', (err) => fastify.log.warn({ err }, 'email queue error'))
    const counted = queue
    fastify.metrics.registry.registerMetric(new Gauge({
      name: 'parley_email_queue_jobs',
      help: 'Email jobs by state, read from the queue when scraped',
      labelNames: ['state'],
      registers: [],
      async collect () {
        const counts = await counted.getJobCounts('waiting', 'active', 'delayed', 'failed').catch(() => undefined)
        for (const [state, n] of Object.entries(counts ?? {})) this.set({ state }, n)
      }
    }))
    if (!EMAIL_WORKER) return
    const transport = createMailTransport(SMTP_URL, MAIL_CAPTURE_DIR)
    closeTransport = transport.close
    worker = createEmailWorker({
      connection: fastify.redisConnection('email-worker', { maxRetriesPerRequest: null }),
      prefix,
      transport,
      from: MAIL_FROM,
      redis: fastify.redis,
      log: fastify.log.child({ component: 'email-worker' })
    })
    worker.on('failed', () => fastify.metrics.emailJobsFailed.inc())
    fastify.log.info(`email worker running in-process; mail goes to ${transport.describe}`)
  })

  fastify.decorate('mailer', {
    enqueue: async (jobId: string, mail: EmailJob, options: JobsOptions = {}) => {
      if (!queue) throw new Error('the email queue starts when the app is ready')
      await queue.add('send', mail, { ...options, jobId })
    },
    get worker () { return worker }
  })

  // Runs before the redis plugin's own onClose (hooks run in reverse order of
  // registration), so the worker can finish the job in hand first. With Redis
  // away that wait would never end: the job is then left to BullMQ's stalled-job
  // recovery, and the connections are dropped by the redis plugin right after.
  fastify.addHook('onClose', async () => {
    const redisUp = fastify.redis.status === 'ready'
    // Closing a BullMQ connection that is still being set up makes it emit an
    // error nobody can catch: let a just-started queue and worker finish that first.
    if (redisUp) await Promise.race([Promise.allSettled([queue?.waitUntilReady(), worker?.waitUntilReady()]), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
    const closing = Promise.allSettled([worker?.close(!redisUp), queue?.close()])
    await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, redisUp ? 5000 : 500).unref())])
    closeTransport()
  })
}, { name: 'mailer', dependencies: ['config', 'redis', 'metrics'] })
