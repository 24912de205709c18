import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'

export default fp(async (fastify) => {
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Parley API',
        version: '0.1.0',
        description: 'Real-time chat backend. Every error has the shape {statusCode, code, error, message} with a stable `code`. The WebSocket protocol (/ws) is described in AsyncAPI 3 at [/docs/asyncapi.json](/docs/asyncapi.json).'
      },
      tags: [
        { name: 'health', description: 'Liveness and readiness probes' },
        { name: 'auth', description: 'Registration, sign-in and sessions' },
        { name: 'users', description: 'Profiles, avatars, the user directory, blocks' },
        { name: 'conversations', description: 'Direct conversations and groups, members, read state' },
        { name: 'messages', description: 'Sending, history, catch-up, edits, deletions, reactions, search' },
        { name: 'media', description: 'Image uploads and downloads' },
        { name: 'push', description: 'Web Push subscriptions of your devices' },
        { name: 'bots', description: 'Bot accounts and their API keys' },
        { name: 'webhooks', description: 'Outgoing webhooks of a conversation: each stored message change POSTed, signed, retried' },
        { name: 'realtime', description: 'The WebSocket at /ws: its protocol is described by the AsyncAPI document at /docs/asyncapi.json' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT, or a bot\'s API key (pk_…)' },
          cookieAuth: { type: 'apiKey', in: 'cookie', name: 'access_token' }
        }
      }
    },
    refResolver: {
      // Shared schemas keep their own names in components.schemas.
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
    }
  })
  await fastify.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    uiConfig: { deepLinking: true }
  })
}, { name: 'swagger', dependencies: ['config', 'errors'] })
