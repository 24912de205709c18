// `npm run worker`: the email worker as its own process, for deployments that
// run the API with EMAIL_WORKER=false. Same configuration as the server.
import closeWithGrace from 'close-with-grace'
import pino from 'pino'
import { loadConfig } from './schemas/config.js'
import { createEmailWorker, createMailTransport } from './services/mail.js'
import { openRedis, queuePrefix } from './services/redis-client.js'

const config = loadConfig()
const log = pino({ level: config.LOG_LEVEL, name: 'parley-worker' })
const target = { url: config.REDIS_URL, clusterNodes: config.redisClusterNodes }
const redis = openRedis(target, { keyPrefix: `${config.REDIS_PREFIX}:`, connectionName: 'parley:worker-commands' })
const connection = openRedis(target, { maxRetriesPerRequest: null, connectionName: 'parley:email-worker' })
const transport = createMailTransport(config.SMTP_URL, config.MAIL_CAPTURE_DIR)
const worker = createEmailWorker({ connection, prefix: queuePrefix(config.REDIS_PREFIX), transport, from: config.MAIL_FROM, redis, log })
log.info(`email worker started; mail goes to ${transport.describe}`)

closeWithGrace({ delay: 10000, logger: log }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'worker stopping after an error')
  else log.info({ signal }, 'worker stopping: finishing the job in hand')
  await worker.close()
  transport.close()
  await Promise.allSettled([redis.quit(), connection.quit()])
})
