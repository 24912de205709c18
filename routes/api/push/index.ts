import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { ObjectIdString } from '../../../schemas/auth.js'
import { PushConfig, PushSubscriptionBody, PushSubscriptionList, PushSubscriptionView } from '../../../schemas/integrations.js'
import { errorResponses, ref, bearerOrCookie } from '../../../schemas/common.js'

const tags = ['push']

const push: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)
  fastify.addHook('preHandler', fastify.humansOnly)
  const service = fastify.push

  fastify.get('/config', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'The VAPID public key to subscribe a device with',
      response: { 200: PushConfig, ...errorResponses(401, 403, 500) }
    }
  }, async () => ({ vapidPublicKey: service.publicKey }))

  fastify.post('/subscriptions', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Register this device for Web Push (the JSON of a browser\'s PushSubscription)',
      description: 'While you have no open socket, new messages are pushed to your devices: one notification per conversation per burst, none for muted conversations unless you are mentioned, no text from users you blocked. A device registered again moves to you with its new keys; past 20 devices the oldest is dropped. The endpoint must be https and public (TARGET_NOT_ALLOWED, 400); INVALID_PUSH_KEYS (400).',
      body: PushSubscriptionBody,
      response: { 201: ref(PushSubscriptionView), ...errorResponses(400, 401, 403, 413, 415, 429, 500) }
    }
  }, async (request, reply) => reply.code(201).send(await service.subscribe(request.user.id, request.body)))

  fastify.get('/subscriptions', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Your registered devices',
      response: { 200: PushSubscriptionList, ...errorResponses(401, 403, 500) }
    }
  }, async (request) => ({ subscriptions: await service.list(request.user.id) }))

  fastify.delete('/subscriptions/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Stop pushing to a device (PUSH_SUBSCRIPTION_NOT_FOUND, 404)',
      params: Type.Object({ id: ObjectIdString }, { additionalProperties: false }),
      response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 500) }
    }
  }, async (request, reply) => {
    await service.unsubscribe(request.user.id, request.params.id)
    return reply.code(204).send(null)
  })
}

export default push
