import fp from 'fastify-plugin'
import type { Publish, RealtimeEvent } from '../services/events.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Announces an event to users, on every instance: one Redis PUBLISH on the
     * shared events channel. Called only after the write it describes is stored.
     */
    publish: Publish
    eventsChannel: string
  }
}

export interface EventEnvelope {
  userIds: string[]
  event: RealtimeEvent
}

export default fp(async (fastify) => {
  const channel = `${fastify.config.REDIS_PREFIX}:events`
  const publish: Publish = async (userIds, event) => {
    if (userIds.length === 0) return
    try {
      // PUBLISH channels are not key-prefixed by ioredis: the channel carries the prefix itself.
      await fastify.redis.publish(channel, JSON.stringify({ userIds, event } satisfies EventEnvelope))
    } catch (err) {
      // The write is stored; clients that miss the event find it when they catch up.
      fastify.log.warn({ err, type: event.type }, 'event not published')
    }
  }
  fastify.decorate('publish', publish)
  fastify.decorate('eventsChannel', channel)
}, { name: 'events', dependencies: ['config', 'redis'] })
