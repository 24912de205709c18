import fp from 'fastify-plugin'
import type { Publish, RealtimeEvent } from '../services/events.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Announces an event to users, on every instance that holds a socket of
     * theirs: one Redis SPUBLISH per user, on that user's own channel, all
     * sent together (one round trip). Called only after the write it describes is stored.
     */
    publish: Publish
    /** The channel of one user's events (an instance subscribes to it while it holds a socket of theirs). */
    userChannel: (userId: string) => string
    /** The user a channel belongs to, or undefined for any other channel. */
    channelUser: (channel: string) => string | undefined
  }
}

export interface EventEnvelope {
  event: RealtimeEvent
  /** When it was published (ms since the epoch): the fan-out lag is measured from here. */
  at: number
}

// Targeted fan-out: every user has a channel, and an instance subscribes to
// the channels of the users it holds sockets of, so it receives only events it
// can deliver, whatever the total traffic (see README, "Across instances").
export default fp(async (fastify) => {
  // Subscribers have no key prefix, so the channel they name carries it.
  const prefix = `${fastify.config.REDIS_PREFIX}:u:`
  const userChannel = (userId: string): string => `${prefix}${userId}`
  const channelUser = (channel: string): string | undefined => channel.startsWith(prefix) ? channel.slice(prefix.length) : undefined

  const publish: Publish = async (userIds, event) => {
    if (userIds.length === 0) return
    const payload = JSON.stringify({ event, at: Date.now() } satisfies EventEnvelope)
    const users = new Set(userIds)
    try {
      // Sharded pub/sub: on a cluster each user's channel lives on the shard of
      // its slot (a classic PUBLISH would be broadcast to every node). The calls
      // are sent together: one round trip (see services/redis-client.ts).
      // To ioredis an SPUBLISH channel is a key: the command connection adds
      // its `${REDIS_PREFIX}:` itself, which makes it userChannel(userId).
      await Promise.all([...users].map((userId) => fastify.redis.spublish(`u:${userId}`, payload)))
      fastify.metrics.eventsPublished.inc(users.size)
    } catch (err) {
      // The write is stored; clients that miss the event find it when they catch up.
      fastify.log.warn({ err, type: event.type }, 'event not published')
    }
  }
  fastify.decorate('publish', publish)
  fastify.decorate('userChannel', userChannel)
  fastify.decorate('channelUser', channelUser)
}, { name: 'events', dependencies: ['config', 'redis', 'metrics'] })
