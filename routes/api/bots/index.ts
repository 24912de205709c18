import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { BotKeyParams, BotList, BotParams, BotView, CreateBotBody, NewApiKey, NewBot } from '../../../schemas/integrations.js'
import { errorResponses, ref, bearerOrCookie } from '../../../schemas/common.js'

const tags = ['bots']

const bots: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)
  // Bots are made and keyed by people; a bot cannot make more bots.
  fastify.addHook('preHandler', fastify.humansOnly)
  const service = fastify.bots

  fastify.post('/', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Create a bot account, with its first API key',
      description: 'The bot is a user (profile marked `bot: true`) that cannot sign in with a password. Add it to conversations like anyone; it reads and posts through the same routes with `Authorization: Bearer <apiKey>`, and hears of new messages through webhooks. USERNAME_TAKEN (409), TOO_MANY_BOTS (409, 20 per owner).',
      body: CreateBotBody,
      response: { 201: NewBot, ...errorResponses(400, 401, 403, 409, 413, 415, 429, 500) }
    }
  }, async (request, reply) => reply.code(201).send(await service.create(request.user.id, request.body)))

  fastify.get('/', {
    schema: { tags, security: bearerOrCookie, summary: 'Your bots', response: { 200: BotList, ...errorResponses(401, 403, 500) } }
  }, async (request) => ({ bots: await service.list(request.user.id) }))

  fastify.get('/:id', {
    schema: { tags, security: bearerOrCookie, summary: 'One of your bots (BOT_NOT_FOUND, 404)', params: BotParams, response: { 200: ref(BotView), ...errorResponses(400, 401, 403, 404, 500) } }
  }, async (request) => service.get(request.user.id, request.params.id))

  fastify.delete('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Delete a bot: its keys stop working at once, its account is erased like a deleted user\'s (its messages stay, from "Deleted user")',
      params: BotParams,
      response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 500) }
    }
  }, async (request, reply) => {
    await service.remove(request.user.id, request.params.id)
    return reply.code(204).send(null)
  })

  fastify.post('/:id/keys', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Issue another API key (to rotate: issue, switch, revoke the old one); TOO_MANY_API_KEYS (409, 5 per bot)',
      params: BotParams,
      response: { 201: NewApiKey, ...errorResponses(400, 401, 403, 404, 409, 500) }
    }
  }, async (request, reply) => reply.code(201).send(await service.addKey(request.user.id, request.params.id)))

  fastify.delete('/:id/keys/:keyId', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Revoke an API key: refused from the next request on (INVALID_API_KEY, 401)',
      params: BotKeyParams,
      response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 500) }
    }
  }, async (request, reply) => {
    await service.revokeKey(request.user.id, request.params.id, request.params.keyId)
    return reply.code(204).send(null)
  })
}

export default bots
