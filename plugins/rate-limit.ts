import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import { createRequestLimits, type RateBucket, type RequestLimits } from '../services/limits.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Per-user budgets; `authenticate` charges every signed-in request to its route's bucket. */
    requestLimits: RequestLimits
  }
  interface FastifyContextConfig {
    /** The per-user budget this route draws on (default `api`). */
    rateBucket?: RateBucket
  }
}

// Every limit lives in Redis so that it holds across instances.
// - Before sign-in, per IP: routes opt in with `config.rateLimit` (the /api/auth
//   routes and the ticket route); health probes and docs are never limited.
// - Signed in, per user: every authenticated request, HTTP or WebSocket send,
//   draws on a budget (see services/limits.ts).
export default fp(async (fastify) => {
  const { RATE_LIMIT_MAX, SEND_RATE_LIMIT_MAX, UPLOAD_RATE_LIMIT_MAX, SEARCH_RATE_LIMIT_MAX } = fastify.config
  await fastify.register(rateLimit, {
    global: false,
    timeWindow: 60_000,
    redis: fastify.redis,
    nameSpace: 'rl:ip:',
    // While Redis is away the request is refused as 503 anyway (plugins/availability.ts).
    skipOnError: true,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      code: 'RATE_LIMITED',
      error: 'Too Many Requests',
      message: `Rate limit exceeded, retry in ${context.after}`
    })
  })
  fastify.decorate('requestLimits', createRequestLimits(fastify.redis, {
    api: RATE_LIMIT_MAX,
    send: SEND_RATE_LIMIT_MAX,
    upload: UPLOAD_RATE_LIMIT_MAX,
    search: SEARCH_RATE_LIMIT_MAX
  }))
}, { name: 'rate-limit', dependencies: ['config', 'redis', 'errors'] })
