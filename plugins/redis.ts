import fp from 'fastify-plugin'
import { Redis, type RedisOptions } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    /** Command connection; every key is prefixed with `${REDIS_PREFIX}:`. */
    redis: Redis
    /**
     * A new connection for blocking or subscriber use (pub/sub, BullMQ), closed
     * with the app. BullMQ connections must not have a key prefix.
     */
    redisConnection: (purpose: string, options?: RedisOptions) => Redis
  }
}

// QUIT lets replies in flight arrive; while Redis is unreachable it could wait
// forever, so it gets a second before the socket is simply dropped.
async function closeConnection (connection: Redis): Promise<void> {
  if (connection.status === 'end') return
  const timeout = new Promise((resolve) => setTimeout(resolve, 1000).unref())
  await Promise.race([connection.quit().catch(() => {}), timeout])
  connection.disconnect()
}

export default fp(async (fastify) => {
  const { REDIS_URL, REDIS_PREFIX } = fastify.config
  const connections = new Set<Redis>()

  const redisConnection = (purpose: string, options: RedisOptions = {}): Redis => {
    const connection = new Redis(REDIS_URL, { connectionName: `parley:${purpose}`, ...options })
    // One line per outage, not one per reconnection attempt.
    let healthy = true
    connection.on('ready', () => {
      if (!healthy) fastify.log.info({ purpose }, 'redis connection restored')
      healthy = true
    })
    connection.on('error', (err) => {
      if (healthy) fastify.log.warn({ err, purpose }, 'redis connection lost; reconnecting')
      healthy = false
    })
    connections.add(connection)
    connection.once('end', () => connections.delete(connection))
    return connection
  }

  // No offline queue: while Redis is away a command fails at once (a fast 503,
  // see plugins/availability.ts) instead of waiting for reconnect retries.
  const redis = redisConnection('commands', { keyPrefix: `${REDIS_PREFIX}:`, maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true })
  await redis.connect()

  fastify.decorate('redis', redis)
  fastify.decorate('redisConnection', redisConnection)
  fastify.addHook('onClose', async () => {
    await Promise.allSettled([...connections].map(closeConnection))
  })
}, { name: 'redis', dependencies: ['config'] })
