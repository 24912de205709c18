// The WebSocket protocol: JSON text frames. Requests carry a client `ref` that
// the server's `ack` or `error` echoes; events carry a `type` and `data`. These
// schemas validate every frame and generate the AsyncAPI document.
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { ObjectIdString } from './auth.js'
import { ChangesPage, ClientMsgId, Emoji, ReadState } from './chat.js'
import { MAX_INT } from './common.js'

const strict = { additionalProperties: false } as const
export const Ref = Type.String({ minLength: 1, maxLength: 64, description: 'Chosen by the client; echoed by the ack or error' })

export const requestData = {
  send: Type.Object({
    conversationId: ObjectIdString,
    clientMsgId: ClientMsgId,
    text: Type.Optional(Type.String({ maxLength: 100000 })),
    attachments: Type.Optional(Type.Array(ObjectIdString, { maxItems: 100, uniqueItems: true })),
    replyTo: Type.Optional(ObjectIdString)
  }, { ...strict, description: 'Send a message; acked with the stored message (same service, idempotency and seq as HTTP)' }),
  edit: Type.Object({ messageId: ObjectIdString, text: Type.String({ minLength: 1, maxLength: 100000 }) }, { ...strict, description: 'Edit your message' }),
  delete: Type.Object({ messageId: ObjectIdString }, { ...strict, description: 'Delete your message' }),
  react: Type.Object({ messageId: ObjectIdString, emoji: Emoji, on: Type.Boolean() }, { ...strict, description: 'Add (on: true) or take back a reaction' }),
  typing: Type.Object({ conversationId: ObjectIdString, state: Type.Optional(Type.Union([Type.Literal('start'), Type.Literal('stop')])) }, { ...strict, description: 'You are typing (repeat every few seconds while you are) or stopped' }),
  read: Type.Object({ conversationId: ObjectIdString, seq: Type.Integer({ maximum: MAX_INT, minimum: 0 }) }, { ...strict, description: 'Read up to seq' }),
  sync: Type.Object({
    conversations: Type.Array(Type.Object({ conversationId: ObjectIdString, since: Type.Integer({ maximum: MAX_INT, minimum: 0, description: 'The last changeSeq you have' }) }, strict), { minItems: 1, maxItems: 100 }),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 }))
  }, { ...strict, description: 'Catch up after a reconnect: the ack carries every change after `since`; live events already queued for those conversations follow it, with nothing lost or repeated' }),
  presence: Type.Object({ userIds: Type.Array(ObjectIdString, { minItems: 1, maxItems: 200, uniqueItems: true }) }, { ...strict, description: 'Who of these is online now' }),
  ping: Type.Object({}, { ...strict, description: 'Application-level ping; acked' })
} satisfies Record<string, TSchema>

export type RequestType = keyof typeof requestData
export type RequestData<T extends RequestType> = Static<(typeof requestData)[T]>

export const RequestEnvelope = Type.Object({
  type: Type.String({ minLength: 1, maxLength: 32 }),
  ref: Type.Optional(Ref),
  data: Type.Optional(Type.Unknown())
}, strict)

const MessageRef = Type.Object({ message: Type.Unsafe({ $ref: '#/components/schemas/Message' }) })
const PresenceState = Type.Object({ userId: ObjectIdString, online: Type.Boolean(), lastSeenAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]) })

/** The `data` of the ack of each request type. */
export const ackData = {
  send: Type.Object({
    message: Type.Unsafe({ $ref: '#/components/schemas/Message' }),
    created: Type.Boolean({ description: 'false when this clientMsgId was already stored: the original is returned' })
  }),
  edit: MessageRef,
  delete: MessageRef,
  react: MessageRef,
  typing: Type.Object({ sent: Type.Boolean({ description: 'false when a start was throttled (at most one a second per conversation)' }) }),
  read: ReadState,
  sync: Type.Object({
    conversations: Type.Array(Type.Composite([Type.Object({ conversationId: ObjectIdString }), ChangesPage]), {
      description: 'One page per conversation asked for; where hasMore, sync again from `cursor`. One ack carries at most 1,000 changes and about 1 MiB (at most half the server\'s per-socket buffer cap) over all its conversations.'
    })
  }),
  presence: Type.Object({ users: Type.Array(PresenceState, { description: 'Only people you share a conversation with' }) }),
  ping: Type.Object({ pong: Type.Integer({ maximum: MAX_INT, description: 'Server time, ms since the epoch' }) })
} satisfies Record<RequestType, TSchema>

export type AckData<T extends RequestType> = Static<(typeof ackData)[T]>

export const ErrorFrame = Type.Object({
  type: Type.Literal('error'),
  ref: Type.Union([Ref, Type.Null()]),
  code: Type.String({ description: 'Stable code, the same as the HTTP API uses (e.g. CONVERSATION_NOT_FOUND, VALIDATION_ERROR, RATE_LIMITED, BAD_FRAME)' }),
  message: Type.String()
}, { description: 'Failure of a request, or a frame that could not be read' })

export const eventData = {
  'message.created': MessageRef,
  'message.updated': MessageRef,
  'message.deleted': MessageRef,
  'reaction.updated': MessageRef,
  'conversation.updated': Type.Object({ conversation: Type.Object({ id: ObjectIdString, type: Type.String(), title: Type.Union([Type.String(), Type.Null()]), memberIds: Type.Array(ObjectIdString), adminIds: Type.Array(ObjectIdString) }) }),
  'conversation.removed': Type.Object({ conversationId: ObjectIdString }, { description: 'You are no longer a member' }),
  'read.updated': Type.Object({ conversationId: ObjectIdString, userId: ObjectIdString, lastReadSeq: Type.Integer({ maximum: MAX_INT }) }),
  typing: Type.Object({ conversationId: ObjectIdString, userId: ObjectIdString, state: Type.Union([Type.Literal('start'), Type.Literal('stop')]), expiresAt: Type.String({ format: 'date-time', description: 'Treat as stopped after this unless refreshed' }) }),
  presence: PresenceState,
  'session.revoked': Type.Object({ sessionIds: Type.Array(Type.String()) }, { description: 'Sent before the server closes the sockets of an ended session (close code 4001)' }),
  resync: Type.Object({ reason: Type.String() }, { description: 'Events may have been missed (the server lost Redis for a while): catch up with sync' })
} satisfies Record<string, TSchema>

export const CLOSE = {
  normal: 1000,
  policy: 1008,
  tooBig: 1009,
  restarting: 1012,
  overloaded: 1013,
  sessionEnded: 4001
} as const
