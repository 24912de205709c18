import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'

export const WS_MAX_PAYLOAD = 64 * 1024

export default fp(async (fastify) => {
  await fastify.register(websocket, {
    options: {
      maxPayload: WS_MAX_PAYLOAD,
      perMessageDeflate: false
    }
  })
}, { name: 'websocket', dependencies: ['config'] })
