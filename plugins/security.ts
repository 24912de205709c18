import fp from 'fastify-plugin'
import helmet from '@fastify/helmet'
import cors from '@fastify/cors'
import underPressure from '@fastify/under-pressure'

export default fp(async (fastify) => {
  const { corsOrigins, MAX_EVENT_LOOP_DELAY_MS } = fastify.config

  await fastify.register(helmet, {
    // The API serves JSON; the Swagger UI sets its own CSP (see plugins/swagger.ts).
    contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' }
  })

  const allowed = new Set(corsOrigins)
  await fastify.register(cors, {
    // Exact matches against the allowlist only: no patterns built from config or input.
    origin: (origin, callback) => callback(null, origin !== undefined && allowed.has(origin)),
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: ['retry-after', 'x-request-id', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'],
    maxAge: 600
  })

  await fastify.register(underPressure, {
    maxEventLoopDelay: MAX_EVENT_LOOP_DELAY_MS,
    retryAfter: 5
  })
}, { name: 'security', dependencies: ['config', 'errors'] })
