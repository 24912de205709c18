import fp from 'fastify-plugin'
import type { RedisOptions } from 'ioredis'
import { openRedis, type RedisClient } from '../services/redis-client.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Command connection (single Redis or cluster); every key is prefixed with `${REDIS_PREFIX}:`. */
    redis: RedisClient
    /**
     * A new connection for blocking or subscriber use (pub/sub, BullMQ), closed
     * with the app. BullMQ connections must not have a key prefix.
     */
    redisConnection: (purpose: string, options?: RedisOptions) => RedisClient
  }
}

// QUIT lets replies in flight arrive; while Redis is unreachable it could wait
// forever, so it gets a second before the socket is simply dropped.
async function closeConnection (connection: RedisClient): Promise<void> {
  if (connection.status === 'end') return
  const timeout = new Promise((resolve) => setTimeout(resolve, 1000).unref())
  await Promise.race([connection.quit().catch(() => {}), timeout])
  connection.disconnect()
}

export default fp(async (fastify) => {
  const { REDIS_URL, REDIS_PREFIX, redisClusterNodes } = fastify.config
  const connections = new Set<RedisClient>()

  const redisConnection = (purpose: string, options: RedisOptions = {}): RedisClient => {
    const connection = openRedis({ url: REDIS_URL, clusterNodes: redisClusterNodes }, { connectionName: `parley:${purpose}`, ...options })
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

  fastify.decorate<RedisClient>('redis', redis)
  fastify.decorate('redisConnection', redisConnection)
  fastify.addHook('onClose', async () => {
    await Promise.allSettled([...connections].map(closeConnection))
  })
}, { name: 'redis', dependencies: ['config'] })
