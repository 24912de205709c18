import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createHash } from 'node:crypto'
import nodemailer, { type Transporter } from 'nodemailer'
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq'
import type { RedisClient } from './redis-client.js'
import type { FastifyBaseLogger } from 'fastify'

export const EMAIL_QUEUE = 'email'

export interface EmailJob {
  to: string
  subject: string
  text: string
  html: string
}

export interface MailTransport {
  send: (mail: EmailJob & { from: string, messageId: string }) => Promise<void>
  describe: string
  close: () => void
}

/** SMTP when a URL is given; otherwise (development) .eml files in a folder. */
export function createMailTransport (smtpUrl: string | undefined, captureDir: string): MailTransport {
  if (smtpUrl) {
    const transporter: Transporter = nodemailer.createTransport(smtpUrl)
    const url = new URL(smtpUrl)
    return {
      describe: `smtp://${url.hostname}:${url.port || (url.protocol === 'smtps:' ? 465 : 587)}`,
      send: async (mail) => { await transporter.sendMail(mail) },
      close: () => transporter.close()
    }
  }
  const dir = resolve(captureDir)
  const transporter = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' })
  return {
    describe: `.eml files in ${dir}`,
    send: async (mail) => {
      const info = await transporter.sendMail(mail)
      await mkdir(dir, { recursive: true })
      const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${createHash('sha256').update(mail.messageId).digest('hex').slice(0, 12)}.eml`
      await writeFile(join(dir, name), info.message as Buffer, { mode: 0o600 })
    },
    close: () => transporter.close()
  }
}

export interface QueueSettings {
  connection: ConnectionOptions
  prefix: string
  attempts: number
  backoffMs: number
}

export function createEmailQueue ({ connection, prefix, attempts, backoffMs }: QueueSettings): Queue<EmailJob> {
  return new Queue<EmailJob>(EMAIL_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: {
      attempts,
      backoff: { type: 'exponential', delay: backoffMs },
      // Jobs hold one-time codes: drop them once sent, keep failures briefly for inspection.
      removeOnComplete: true,
      removeOnFail: { age: 24 * 3600, count: 1000 }
    }
  })
}

export interface WorkerSettings {
  connection: ConnectionOptions
  prefix: string
  transport: MailTransport
  from: string
  /** Command connection (with the app key prefix) for the sent-markers. */
  redis: RedisClient
  log: FastifyBaseLogger
  concurrency?: number
}

const SENT_MARKER_TTL_S = 7 * 24 * 3600

/**
 * Sends queued mail. A job that is retried after its mail already went out
 * (the worker died between sending and acknowledging) is not sent again: the
 * sent-marker is keyed by the job id.
 */
export function createEmailWorker ({ connection, prefix, transport, from, redis, log, concurrency = 4 }: WorkerSettings): Worker<EmailJob> {
  const worker = new Worker<EmailJob>(EMAIL_QUEUE, async (job: Job<EmailJob>) => {
    const jobId = job.id ?? job.name
    const marker = `mail:sent:${jobId}`
    if (await redis.exists(marker)) {
      log.info({ jobId }, 'mail already sent for this job; not sending again')
      return
    }
    const messageId = `<${createHash('sha256').update(jobId).digest('hex').slice(0, 32)}@parley>`
    await transport.send({ ...job.data, from, messageId })
    await redis.set(marker, '1', 'EX', SENT_MARKER_TTL_S)
    // Never the body or the recipient's codes: only what identifies the job.
    log.info({ jobId, attempt: job.attemptsMade + 1, via: transport.describe }, 'mail sent')
  }, { connection, prefix, concurrency, autorun: true })
  worker.on('failed', (job, err) => {
    log.warn({ jobId: job?.id, attempt: job?.attemptsMade, err: { message: err.message } }, 'mail send failed')
  })
  worker.on('error', logOncePerMinute(log, 'email worker error'))
  return worker
}

/**
 * An error listener for a BullMQ worker or queue: connection errors repeat on
 * every reconnection attempt, so one line per kind of error a minute.
 */
export function logOncePerMinute (log: FastifyBaseLogger, message: string, context: Record<string, unknown> = {}): (err: Error) => void {
  const lastLogged = new Map<string, number>()
  return (err) => {
    const now = Date.now()
    if ((lastLogged.get(err.message) ?? 0) > now - 60_000) return
    lastLogged.set(err.message, now)
    log.error({ err, ...context }, message)
  }
}
