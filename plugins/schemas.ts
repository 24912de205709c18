import fp from 'fastify-plugin'
import { PublicUser } from '../schemas/auth.js'
import { Conversation, MediaInfo, Message } from '../schemas/chat.js'
import { ApiKeyView, BotView, PushPayload, PushSubscriptionView, WebhookEvent, WebhookView } from '../schemas/integrations.js'

// Schemas that many routes share: registered once, referenced by $ref, and
// listed once under components.schemas in the OpenAPI document. PushPayload and
// WebhookEvent are what Parley sends out (to devices, to webhooks): listed
// there so that receivers have them too.
export default fp(async (fastify) => {
  for (const schema of [PublicUser, MediaInfo, Conversation, Message, PushSubscriptionView, ApiKeyView, BotView, WebhookView, PushPayload, WebhookEvent]) fastify.addSchema(schema)
}, { name: 'schemas', dependencies: ['errors'] })
