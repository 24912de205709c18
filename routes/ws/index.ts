// GET /ws: the WebSocket endpoint. Everything is checked on the HTTP request,
// before the upgrade, so a refused client never gets a socket: a foreign
// Origin (403), no or bad credentials (401), too many sockets (429).
import type { FastifyPluginAsync } from 'fastify'
import createError from '@fastify/error'
import { redeemTicket } from '../../services/tickets.js'

const OriginNotAllowed = createError('ORIGIN_NOT_ALLOWED', 'This origin may not open the WebSocket', 403)
const InvalidTicket = createError('INVALID_TICKET', 'The ticket is invalid, used or expired', 401)
const TooManyConnections = createError('TOO_MANY_CONNECTIONS', 'Too many open sockets for this user', 429)

const ws: FastifyPluginAsync = async (fastify) => {
  fastify.get<{ Querystring: { ticket?: string, resume?: string } }>('/', {
    websocket: true,
    schema: { hide: true },
    onRequest: async (request, reply) => {
      // Non-browser clients send no Origin; browsers always do on an upgrade.
      if (!fastify.originAllowed(request)) throw new OriginNotAllowed()
      const ticket = request.query.ticket
      if (typeof ticket === 'string') {
        const user = await redeemTicket(fastify.redis, ticket)
        if (!user) throw new InvalidTicket()
        request.user = { ...user, tokenType: 'access' }
      } else {
        await fastify.authenticate(request, reply)
        // Bots hear of messages through webhooks; a socket would outlive a revoked key.
        await fastify.humansOnly(request, reply)
      }
      if (await fastify.presence.liveCount(request.user.id) >= fastify.config.WS_MAX_CONNECTIONS_PER_USER) throw new TooManyConnections()
    }
  }, (socket, request) => {
    // ?resume=1: the client will send `sync` first; hold message events until then.
    fastify.realtime.accept(socket, { id: request.user.id, sessionId: request.user.sessionId }, { holdUntilSync: request.query.resume === '1' })
      .catch((err) => {
        request.log.error({ err }, 'could not register socket')
        socket.close(1011, 'internal error')
      })
  })
}

export default ws
