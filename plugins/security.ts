import fp from 'fastify-plugin'
import helmet from 'helmet'
import cors from '@fastify/cors'
import underPressure from '@fastify/under-pressure'

export default fp(async (fastify) => {
  const { corsOrigins, MAX_EVENT_LOOP_DELAY_MS } = fastify.config

  // The API serves JSON, so only the headers that matter for JSON and for
  // media are sent; the rest of helmet's set is for HTML pages and, at a dozen
  // headers a response, halves throughput. The Swagger UI and the web app set
  // their own CSP. helmet's middleware is built once: @fastify/helmet 13
  // builds it again for every request (4% of a `GET /api/auth/me`).
  const securityHeaders = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' },
    strictTransportSecurity: fastify.config.COOKIE_SECURE ? { maxAge: 31536000, includeSubDomains: true } : false,
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    referrerPolicy: { policy: 'no-referrer' },
    xContentTypeOptions: true,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xFrameOptions: false,
    xPermittedCrossDomainPolicies: false,
    xPoweredBy: true,
    xXssProtection: false
  })
  fastify.addHook('onRequest', (request, reply, done) => { securityHeaders(request.raw, reply.raw, (err) => { done(err as Error | undefined) }) })

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
