import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { SearchQuery, SearchResults } from '../../../schemas/chat.js'
import { errorResponses, bearerOrCookie } from '../../../schemas/common.js'

const search: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)

  fastify.get('/messages', {
    config: { rateBucket: 'search' },
    schema: {
      tags: ['messages'],
      security: bearerOrCookie,
      summary: 'Search message text in your conversations (case-insensitive substring)',
      querystring: SearchQuery,
      response: { 200: SearchResults, ...errorResponses(400, 401, 404, 500) }
    }
  }, async (request) => ({ messages: await fastify.messages.search(request.user.id, request.query.q, request.query.limit ?? 20, request.query.conversationId) }))
}

export default search
