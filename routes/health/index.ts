import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { LiveResponse, ReadyResponse } from '../../schemas/health.js'
import { errorResponses } from '../../schemas/common.js'
import { checkReadiness } from '../../services/health.js'

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/live', {
    schema: {
      tags: ['health'],
      summary: 'Liveness probe: the process is up and serving',
      response: { 200: LiveResponse, ...errorResponses(503) }
    }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/ready', {
    schema: {
      tags: ['health'],
      summary: 'Readiness probe: MongoDB and Redis answer',
      description: '503 with code NOT_READY naming what is down.',
      response: { 200: ReadyResponse, ...errorResponses(503) }
    }
  }, async (_request, reply) => {
    const checks = await checkReadiness(fastify.mongo.db, fastify.redis)
    const down = Object.entries(checks).filter(([, state]) => state === 'down').map(([name]) => name)
    if (down.length > 0) {
      return reply.code(503).send({ statusCode: 503, code: 'NOT_READY', error: 'Service Unavailable', message: `Not ready: ${down.join(' and ')} ${down.length > 1 ? 'are' : 'is'} down` })
    }
    return { status: 'ok' as const, checks }
  })
}

export default health
