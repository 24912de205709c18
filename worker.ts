// `npm run worker`: the email worker as its own process, for deployments that
// run the API with EMAIL_WORKER=false. Same configuration as the server.
import closeWithGrace from 'close-with-grace'
import pino from 'pino'
import { Redis } from 'ioredis'
import { loadConfig } from './schemas/config.js'
import { createEmailWorker, createMailTransport } from './services/mail.js'

const config = loadConfig()
const log = pino({ level: config.LOG_LEVEL, name: 'parley-worker' })
const redis = new Redis(config.REDIS_URL, { keyPrefix: `${config.REDIS_PREFIX}:`, connectionName: 'parley:worker-commands' })
const connection = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null, connectionName: 'parley:email-worker' })
const transport = createMailTransport(config.SMTP_URL, config.MAIL_CAPTURE_DIR)
const worker = createEmailWorker({ connection, prefix: `${config.REDIS_PREFIX}:bull`, transport, from: config.MAIL_FROM, redis, log })
log.info(`email worker started; mail goes to ${transport.describe}`)

closeWithGrace({ delay: 10000, logger: log }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'worker stopping after an error')
  else log.info({ signal }, 'worker stopping: finishing the job in hand')
  await worker.close()
  transport.close()
  await Promise.allSettled([redis.quit(), connection.quit()])
})
