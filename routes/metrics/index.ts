// GET /metrics: Prometheus text format, for a scraper that presents
// METRICS_TOKEN as a Bearer token. Without METRICS_TOKEN the route does not
// exist (404), so nothing about the server is public by default.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import { Unauthorized } from '../../plugins/auth.js'

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

const metrics: FastifyPluginAsync = async (fastify) => {
  const token = fastify.config.METRICS_TOKEN
  if (token === undefined) return
  const expected = digest(`Bearer ${token}`)
  fastify.get('/', { schema: { hide: true } }, async (request, reply) => {
    // Compared as digests: constant time whatever the length presented.
    if (!timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) throw new Unauthorized()
    return reply.type(fastify.metrics.registry.contentType).send(await fastify.metrics.registry.metrics())
  })
}

export default metrics
