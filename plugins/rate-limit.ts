import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'

// Limits are kept in Redis so that they hold across instances. Routes opt in
// (`config.rateLimit`), so health probes and the WebSocket upgrade are never limited.
export default fp(async (fastify) => {
  await fastify.register(rateLimit, {
    global: false,
    max: fastify.config.RATE_LIMIT_MAX,
    timeWindow: 60_000,
    redis: fastify.redis,
    nameSpace: 'rl:',
    // A Redis outage must not lock every client out.
    skipOnError: true,
    errorResponseBuilder: (_request, context) => ({
      statusCode: 429,
      code: 'RATE_LIMITED',
      error: 'Too Many Requests',
      message: `Rate limit exceeded, retry in ${context.after}`
    })
  })
}, { name: 'rate-limit', dependencies: ['config', 'redis', 'errors'] })
