// Web Push subscriptions, bot accounts with API keys, outgoing webhooks.
import { Type } from '@sinclair/typebox'
import { ObjectIdString, PublicUser, Username } from './auth.js'
import { MAX_INT, Nullable, ref } from './common.js'

const strict = { additionalProperties: false } as const
const base64url = (description: string, min: number, max: number) => Type.String({ pattern: `^[A-Za-z0-9_-]{${min},${max}}={0,2}$`, description })
const DateTime = Type.String({ format: 'date-time' })

// ---- Web Push ------------------------------------------------------------------

export const PushConfig = Type.Object({
  vapidPublicKey: Type.String({ description: 'The application server key: pass it as `applicationServerKey` to `PushManager.subscribe()`' })
})

/** What `PushSubscription.toJSON()` gives in a browser. */
export const PushSubscriptionBody = Type.Object({
  endpoint: Type.String({ minLength: 10, maxLength: 2048, description: 'The push service URL of this device (https; checked against private addresses)' }),
  expirationTime: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_INT }), Type.Null()])),
  keys: Type.Object({
    p256dh: base64url('The device\'s P-256 public key (65 bytes, base64url)', 86, 88),
    auth: base64url('The device\'s 16-byte auth secret (base64url)', 22, 24)
  }, strict)
}, strict)

export const PushSubscriptionView = Type.Object({
  id: ObjectIdString,
  endpointOrigin: Type.String({ description: 'The push service (the full endpoint is a capability and is not shown)', examples: ['https://fcm.googleapis.com'] }),
  createdAt: DateTime,
  lastPushAt: Nullable(DateTime)
}, { $id: 'PushSubscription', title: 'PushSubscription' })

export const PushSubscriptionList = Type.Object({ subscriptions: Type.Array(ref(PushSubscriptionView)) })

/** The JSON a device receives, decrypted, in its service worker's `push` event. */
export const PushPayload = Type.Object({
  type: Type.Literal('message'),
  conversationId: ObjectIdString,
  seq: Type.Integer({ maximum: MAX_INT, description: 'The message the notification is about' }),
  title: Type.String({ description: 'The group\'s title, or the sender\'s name in a direct conversation' }),
  body: Nullable(Type.String(), { description: 'A preview of the text; null when the sender is someone you blocked' }),
  unreadCount: Type.Integer({ maximum: MAX_INT }),
  mention: Type.Boolean({ description: 'You were mentioned (sent even when the conversation is muted)' })
}, { $id: 'PushPayload', title: 'PushPayload', description: 'The JSON a device receives, decrypted, in its service worker\'s push event' })

// ---- Bots and API keys ---------------------------------------------------------

export const CreateBotBody = Type.Object({
  username: Username,
  displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 50, pattern: '\\S' }))
}, strict)

export const ApiKeyView = Type.Object({
  id: Type.String({ pattern: '^[0-9a-f]{16}$' }),
  prefix: Type.String({ description: 'The key\'s first characters, to tell keys apart', examples: ['pk_1a2b3c4d5e6f7a8b'] }),
  createdAt: DateTime,
  lastUsedAt: Nullable(DateTime)
}, { $id: 'ApiKey', title: 'ApiKey' })

export const NewApiKey = Type.Object({
  key: ref(ApiKeyView),
  apiKey: Type.String({ description: 'Shown once: send it as `Authorization: Bearer <apiKey>`. Only a hash is stored.' })
})

export const BotView = Type.Object({
  user: ref(PublicUser),
  ownerId: ObjectIdString,
  keys: Type.Array(ref(ApiKeyView))
}, { $id: 'Bot', title: 'Bot' })

export const NewBot = Type.Object({ bot: ref(BotView), apiKey: Type.String({ description: 'Shown once' }) })
export const BotList = Type.Object({ bots: Type.Array(ref(BotView)) })
export const BotParams = Type.Object({ id: ObjectIdString }, strict)
export const BotKeyParams = Type.Object({ id: ObjectIdString, keyId: Type.String({ pattern: '^[0-9a-f]{16}$' }) }, strict)

// ---- Outgoing webhooks -----------------------------------------------------------

export const WEBHOOK_EVENTS = ['message.created', 'message.updated', 'message.deleted', 'reaction.updated'] as const
export const WebhookEventType = Type.Union(WEBHOOK_EVENTS.map((e) => Type.Literal(e)))

export const CreateWebhookBody = Type.Object({
  url: Type.String({ minLength: 8, maxLength: 2048, description: 'Where events are POSTed (http or https; private addresses are refused unless the server allows them)' }),
  events: Type.Optional(Type.Array(WebhookEventType, { minItems: 1, maxItems: WEBHOOK_EVENTS.length, uniqueItems: true, description: 'Default: all' }))
}, strict)

export const WebhookPatch = Type.Object({
  enabled: Type.Optional(Type.Boolean({ description: 'true re-enables a webhook that was disabled after persistent failures' })),
  events: Type.Optional(Type.Array(WebhookEventType, { minItems: 1, maxItems: WEBHOOK_EVENTS.length, uniqueItems: true }))
}, { ...strict, minProperties: 1 })

export const WebhookView = Type.Object({
  id: ObjectIdString,
  conversationId: ObjectIdString,
  url: Type.String(),
  events: Type.Array(WebhookEventType),
  enabled: Type.Boolean(),
  disabledReason: Nullable(Type.String()),
  failedEventsInARow: Type.Integer({ maximum: MAX_INT, description: 'Events whose every attempt failed, since the last success; the webhook is disabled when this reaches the server\'s limit' }),
  createdBy: ObjectIdString,
  createdAt: DateTime
}, { $id: 'Webhook', title: 'Webhook' })

export const NewWebhook = Type.Object({
  webhook: ref(WebhookView),
  secret: Type.String({ description: 'Shown once: the HMAC-SHA256 key of the X-Parley-Signature header' })
})
export const WebhookList = Type.Object({ webhooks: Type.Array(ref(WebhookView)) })
export const WebhookParams = Type.Object({ id: ObjectIdString, webhookId: ObjectIdString }, strict)

export const WebhookDelivery = Type.Object({
  eventId: Type.String(),
  type: WebhookEventType,
  attempt: Type.Integer({ minimum: 1, maximum: MAX_INT }),
  ok: Type.Boolean(),
  status: Nullable(Type.Integer({ maximum: 999 }), { description: 'The HTTP status the target answered, null when it did not answer' }),
  error: Nullable(Type.String()),
  durationMs: Type.Integer({ maximum: MAX_INT }),
  at: DateTime
}, { title: 'WebhookDelivery' })
export const WebhookDeliveryList = Type.Object({ deliveries: Type.Array(WebhookDelivery, { description: 'Newest first; the last 100 attempts' }) })

/** The JSON body POSTed to a webhook. */
export const WebhookEvent = Type.Object({
  id: Type.String({ description: 'Event id: the same on every retry (deduplicate on it)', examples: ['6650c0ffee0123456789abcd.42'] }),
  type: WebhookEventType,
  conversationId: ObjectIdString,
  createdAt: DateTime,
  data: Type.Object({ message: Type.Unsafe<object>({ $ref: 'Message#' }) })
}, { $id: 'WebhookEvent', title: 'WebhookEvent', description: 'The JSON body POSTed to a webhook' })
