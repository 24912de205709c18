import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { EditBody, IdParams, Message, ReactionParams } from '../../../schemas/chat.js'
import { errorResponses, ref, bearerOrCookie } from '../../../schemas/common.js'

const tags = ['messages']

const messages: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)
  const service = fastify.messages

  fastify.patch('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Edit your message',
      description: 'NOT_SENDER (403), MESSAGE_DELETED (409), MESSAGE_TOO_LONG.',
      params: IdParams,
      body: EditBody,
      response: { 200: ref(Message), ...errorResponses(400, 401, 403, 404, 409, 413, 415, 500, 503) }
    }
  }, async (request) => service.edit(request.params.id, request.user.id, request.body.text))

  fastify.delete('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Delete your message (a tombstone stays)',
      params: IdParams,
      response: { 200: ref(Message), ...errorResponses(400, 401, 403, 404, 409, 500, 503) }
    }
  }, async (request) => service.remove(request.params.id, request.user.id))

  fastify.put('/:id/reactions/:emoji', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'React with an emoji',
      params: ReactionParams,
      response: { 200: ref(Message), ...errorResponses(400, 401, 403, 404, 409, 500, 503) }
    }
  }, async (request) => service.react(request.params.id, request.user.id, request.params.emoji, true))

  fastify.delete('/:id/reactions/:emoji', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Take your reaction back',
      params: ReactionParams,
      response: { 200: ref(Message), ...errorResponses(400, 401, 403, 404, 409, 500, 503) }
    }
  }, async (request) => service.react(request.params.id, request.user.id, request.params.emoji, false))
}

export default messages
