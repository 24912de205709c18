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
    // A socket error is almost always the client's doing (invalid UTF-8, an
    // oversized frame, a reset connection): ws has already closed the socket
    // with the right code, and any client could flood an error-level log.
    errorHandler: (error, socket, request) => {
      const code = (error as NodeJS.ErrnoException).code ?? ''
      if (code.startsWith('WS_ERR_') || code === 'ECONNRESET' || code === 'EPIPE') {
        request.log.debug({ err: error }, 'websocket closed on a client fault')
        return
      }
      request.log.error({ err: error }, 'websocket failed')
      socket.terminate()
    },
    // On shutdown every socket is told to reconnect elsewhere (1012).
    preClose: async () => {
      const server = fastify.websocketServer
      for (const socket of server.clients) socket.close(CLOSE.restarting, 'server restarting')
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
}, { name: 'websocket', dependencies: ['config'] })
