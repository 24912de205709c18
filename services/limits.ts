// Per-user request budgets, kept in Redis so that they hold across instances:
// one for every signed-in request, and tighter ones for what costs the server
// most (sending, uploading, searching). Each is a fixed one-minute window.
import type { RedisClient } from './redis-client.js'
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import createError from '@fastify/error'
import { withRetryAfter } from './errors.js'

export const RateLimited = createError('RATE_LIMITED', 'Too many %s requests; retry in %s s', 429)

export type RateBucket = 'api' | 'send' | 'upload' | 'search'

export type RequestLimits = ReturnType<typeof createRequestLimits>

export function createRequestLimits (redis: RedisClient, perMinute: Record<RateBucket, number>) {
  const limiters = Object.fromEntries(Object.entries(perMinute).map(([bucket, points]) =>
    [bucket, new RateLimiterRedis({ storeClient: redis, keyPrefix: `rl:${bucket}`, points, duration: 60 })])) as Record<RateBucket, RateLimiterRedis>

  /** Counts one request of `key` (a user id) against `bucket`; RATE_LIMITED (429, retry-after) past the budget. */
  async function consume (bucket: RateBucket, key: string): Promise<void> {
    try {
      await limiters[bucket].consume(key)
    } catch (err) {
      // Anything but a refusal (Redis unreachable) is the caller's 503.
      if (!(err instanceof RateLimiterRes)) throw err
      const seconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000))
      throw withRetryAfter(new RateLimited(bucket === 'api' ? 'API' : bucket, String(seconds)), seconds)
    }
  }

  return { consume }
}
