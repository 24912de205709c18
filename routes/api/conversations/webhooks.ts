import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { IdParams } from '../../../schemas/chat.js'
import { CreateWebhookBody, NewWebhook, WebhookDeliveryList, WebhookList, WebhookParams, WebhookPatch, WebhookView } from '../../../schemas/integrations.js'
import { errorResponses, ref, bearerOrCookie } from '../../../schemas/common.js'

const tags = ['webhooks']

// Registered by routes/api/conversations/index.ts, under its prefix and its authentication hook.
const webhooks: FastifyPluginAsyncTypebox = async (fastify) => {
  const { conversations, webhooks: service } = fastify

  fastify.post('/:id/webhooks', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Add a webhook (group admins; either member of a direct conversation)',
      description: 'Each stored message change of the conversation (created, updated, deleted, reactions) is POSTed as JSON (see WebhookEvent) with headers X-Parley-Event, X-Parley-Event-Id (the same on every retry: deduplicate on it), X-Parley-Timestamp (Unix seconds) and X-Parley-Signature: `v1=` + hex HMAC-SHA256(secret, timestamp + "." + body). A 2xx answer is success; anything else (redirects included: they are not followed) is retried with exponential back-off; a webhook whose events fail every attempt several times in a row is disabled. The URL may not point to private, loopback or link-local addresses (TARGET_NOT_ALLOWED, 400), checked now and on every connection. NOT_ADMIN (403), TOO_MANY_WEBHOOKS (409, 10 per conversation).',
      params: IdParams,
      body: CreateWebhookBody,
      response: { 201: NewWebhook, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    await conversations.getForManager(request.params.id, request.user.id)
    return reply.code(201).send(await service.create(request.params.id, request.user.id, request.body))
  })

  fastify.get('/:id/webhooks', {
    schema: { tags, security: bearerOrCookie, summary: 'The conversation\'s webhooks (admins)', params: IdParams, response: { 200: WebhookList, ...errorResponses(400, 401, 403, 404, 500) } }
  }, async (request) => {
    await conversations.getForManager(request.params.id, request.user.id)
    return { webhooks: await service.list(request.params.id) }
  })

  fastify.patch('/:id/webhooks/:webhookId', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Change a webhook\'s events, disable it, or re-enable one disabled after failures (WEBHOOK_NOT_FOUND, 404)',
      params: WebhookParams,
      body: WebhookPatch,
      response: { 200: ref(WebhookView), ...errorResponses(400, 401, 403, 404, 413, 415, 500) }
    }
  }, async (request) => {
    await conversations.getForManager(request.params.id, request.user.id)
    return service.update(request.params.id, request.params.webhookId, request.body)
  })

  fastify.delete('/:id/webhooks/:webhookId', {
    schema: { tags, security: bearerOrCookie, summary: 'Remove a webhook', params: WebhookParams, response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 500) } }
  }, async (request, reply) => {
    await conversations.getForManager(request.params.id, request.user.id)
    await service.remove(request.params.id, request.params.webhookId)
    return reply.code(204).send(null)
  })

  fastify.get('/:id/webhooks/:webhookId/deliveries', {
    schema: { tags, security: bearerOrCookie, summary: 'The delivery log: the last 100 attempts, newest first', params: WebhookParams, response: { 200: WebhookDeliveryList, ...errorResponses(400, 401, 403, 404, 500) } }
  }, async (request) => {
    await conversations.getForManager(request.params.id, request.user.id)
    return { deliveries: await service.deliveries(request.params.id, request.params.webhookId) }
  })
}

export default webhooks
