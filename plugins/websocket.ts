import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import { CLOSE } from '../schemas/ws.js'

export const WS_MAX_PAYLOAD = 64 * 1024

export default fp(async (fastify) => {
  await fastify.register(websocket, {
    options: {
      // Larger frames close the socket with 1009.
      maxPayload: WS_MAX_PAYLOAD,
      perMessageDeflate: false
    },
    // On shutdown every socket is told to reconnect elsewhere (1012).
    preClose: async () => {
      const server = fastify.websocketServer
      for (const socket of server.clients) socket.close(CLOSE.restarting, 'server restarting')
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
}, { name: 'websocket', dependencies: ['config'] })
