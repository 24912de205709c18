import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { errorResponses, bearerOrCookie, MAX_INT } from '../../../schemas/common.js'
import { issueTicket, TICKET_TTL_S } from '../../../services/tickets.js'

const TicketResponse = Type.Object({
  ticket: Type.String({ description: 'Open the socket with /ws?ticket=<ticket>; works once, within expiresIn seconds' }),
  expiresIn: Type.Integer({ maximum: MAX_INT })
})

const ws: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/ticket', {
    preHandler: [fastify.authenticate, fastify.humansOnly],
    config: { rateLimit: { max: fastify.config.AUTH_RATE_LIMIT_MAX, timeWindow: 60_000 } },
    schema: {
      tags: ['realtime'],
      security: bearerOrCookie,
      summary: 'A single-use ticket to open the WebSocket from a browser on another origin',
      description: 'See the AsyncAPI document at /docs/asyncapi.json for the WebSocket protocol. Bots are refused (NOT_FOR_BOTS, 403): they receive events through webhooks.',
      response: { 201: TicketResponse, ...errorResponses(401, 403, 429, 500) }
    }
  }, async (request, reply) => {
    return reply.code(201).send({ ticket: await issueTicket(fastify.redis, request.user), expiresIn: TICKET_TTL_S })
  })
}

export default ws
