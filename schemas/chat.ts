import { Type } from '@sinclair/typebox'
import { ObjectIdString, PublicUser, SelfUser } from './auth.js'
import { ref, MAX_INT, Nullable, StringEnum } from './common.js'

const strict = { additionalProperties: false } as const
export const IdParams = Type.Object({ id: ObjectIdString }, strict)
export const MemberParams = Type.Object({ id: ObjectIdString, userId: ObjectIdString }, strict)
export const Emoji = Type.String({ minLength: 1, maxLength: 32, pattern: '^(?:\\p{Extended_Pictographic}|\\p{Emoji_Component}|\\u200d|\\ufe0f)+$', description: 'One emoji (URL-encoded in the path)', examples: ['👍'] })
export const ReactionParams = Type.Object({ id: ObjectIdString, emoji: Emoji }, strict)
export const Cursor = Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9_-]+$', description: 'Opaque cursor from the previous page' })
export const Limit = (max: number, fallback: number) => Type.Integer({ minimum: 1, maximum: max, default: fallback, description: `Page size (1–${max})` })

export { PublicUser }

export const ProfilePatch = Type.Object({
  displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 50, pattern: '\\S' })),
  bio: Type.Optional(Type.String({ maxLength: 500 }))
}, { ...strict, minProperties: 1 })

export const UserSearchQuery = Type.Object({
  q: Type.String({ minLength: 1, maxLength: 50, description: 'Prefix of a username or display name (case-insensitive)' }),
  cursor: Type.Optional(Cursor),
  limit: Type.Optional(Limit(50, 20))
}, strict)
export const UserPage = Type.Object({ users: Type.Array(ref(PublicUser)), nextCursor: Nullable(Cursor) })

export const ImageUpload = Type.Object({
  file: Type.String({ format: 'binary', description: 'The image (PNG, JPEG, WebP or GIF, by its magic bytes); one file part, conventionally named `file` (the first file part is taken whatever its name)' })
}, { description: 'multipart/form-data with one file part' })

export const MediaInfo = Type.Object({
  id: ObjectIdString,
  url: Type.String({ examples: ['/api/media/6650c0ffee0123456789abcd'] }),
  contentType: Type.String({ examples: ['image/png'] }),
  size: Type.Integer({ maximum: MAX_INT })
}, { $id: 'MediaInfo', title: 'MediaInfo' })

const LastMessage = Type.Object({
  seq: Type.Integer({ maximum: MAX_INT }),
  senderId: ObjectIdString,
  preview: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  deleted: Type.Boolean()
})

export const Conversation = Type.Object({
  id: ObjectIdString,
  type: StringEnum(['direct', 'group']),
  title: Nullable(Type.String()),
  members: Type.Array(ref(PublicUser)),
  adminIds: Type.Array(ObjectIdString),
  createdAt: Type.String({ format: 'date-time' }),
  lastActivityAt: Type.String({ format: 'date-time' }),
  lastSeq: Type.Integer({ maximum: MAX_INT, description: 'Seq of the newest message (0 when none)' }),
  changeSeq: Type.Integer({ maximum: MAX_INT, description: 'Latest change number; pass it as `since` to /changes to catch up' }),
  lastMessage: Nullable(LastMessage),
  lastReadSeq: Type.Integer({ maximum: MAX_INT }),
  unreadCount: Type.Integer({ maximum: MAX_INT }),
  unreadMentionCount: Type.Integer({ maximum: MAX_INT, description: 'Unread messages that mention you (notify for these even when muted)' }),
  mutedUntil: Nullable(Type.String({ format: 'date-time' }))
}, { $id: 'Conversation', title: 'Conversation' })

export const CreateConversationBody = Type.Union([
  Type.Object({ type: Type.Literal('direct'), userId: ObjectIdString }, strict),
  Type.Object({
    type: Type.Literal('group'),
    title: Type.String({ minLength: 1, maxLength: 100 }),
    memberIds: Type.Array(ObjectIdString, { maxItems: 1000, uniqueItems: true })
  }, strict)
])
export const ConversationPatch = Type.Object({ title: Type.String({ minLength: 1, maxLength: 100 }) }, strict)
export const AddMembersBody = Type.Object({ userIds: Type.Array(ObjectIdString, { minItems: 1, maxItems: 1000, uniqueItems: true }) }, strict)
export const MuteBody = Type.Object({ until: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Muted until then; null unmutes' }) }, strict)
export const ConversationListQuery = Type.Object({ cursor: Type.Optional(Cursor), limit: Type.Optional(Limit(100, 20)) }, strict)
export const ConversationPage = Type.Object({ conversations: Type.Array(ref(Conversation)), nextCursor: Nullable(Cursor) })

export const Message = Type.Object({
  id: ObjectIdString,
  conversationId: ObjectIdString,
  seq: Type.Integer({ maximum: MAX_INT, description: '1, 2, 3 … per conversation, no gaps' }),
  changeSeq: Type.Integer({ maximum: MAX_INT, description: 'Change number of the latest change to this message' }),
  senderId: ObjectIdString,
  clientMsgId: Type.String(),
  text: Nullable(Type.String(), { description: 'null once deleted' }),
  attachments: Type.Array(ref(MediaInfo)),
  reactions: Type.Array(Type.Object({ emoji: Type.String(), count: Type.Integer({ maximum: MAX_INT }), userIds: Type.Array(ObjectIdString) })),
  createdAt: Type.String({ format: 'date-time' }),
  editedAt: Nullable(Type.String({ format: 'date-time' })),
  deleted: Type.Boolean(),
  deletedAt: Nullable(Type.String({ format: 'date-time' })),
  replyTo: Nullable(Type.Object({
    id: ObjectIdString,
    seq: Type.Integer({ maximum: MAX_INT }),
    rootSeq: Type.Integer({ maximum: MAX_INT, description: 'Seq of the thread\'s first message (the parent\'s seq, or its root when the parent is itself a reply)' }),
    senderId: ObjectIdString,
    preview: Type.String({ description: 'The parent\'s text as it was when replied to (first 120 characters); empty once deleted' }),
    deleted: Type.Boolean({ description: 'The parent was deleted: show a tombstone' })
  }), { description: 'The message this one replies to' }),
  mentions: Type.Array(ObjectIdString, { description: 'Members mentioned by @username in the text' }),
  thread: Nullable(Type.Object({
    replyCount: Type.Integer({ maximum: MAX_INT }),
    lastReplyAt: Type.String({ format: 'date-time' })
  }), { description: 'On a thread\'s first message: its replies so far' })
}, { $id: 'Message', title: 'Message' })

export const AccountExport = Type.Object({
  exportedAt: Type.String({ format: 'date-time' }),
  profile: SelfUser,
  sessions: Type.Array(Type.Object({}, { additionalProperties: true })),
  blocked: Type.Array(Type.Object({ userId: ObjectIdString, since: Type.String({ format: 'date-time' }) })),
  media: Type.Array(Type.Object({}, { additionalProperties: true }), { description: 'Your uploads (avatar, attachments): metadata and URL' }),
  conversations: Type.Array(Type.Object({}, { additionalProperties: true }), { description: 'Conversations you are a member of' }),
  messages: Type.Array(ref(Message), { description: 'Every message you sent, oldest first' })
}, { description: 'Everything Parley holds about you, as one JSON document (downloaded as parley-export.json)' })

export const ClientMsgId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$', description: 'Chosen by the client (e.g. a UUID); resending the same one returns the original message', examples: ['6f1c2a8e-1d3b-4c55-9a3e-2b7c9f0e1a42'] })
export const SendBody = Type.Object({
  clientMsgId: ClientMsgId,
  text: Type.Optional(Type.String({ maxLength: 100000, description: 'Up to MESSAGE_MAX_LENGTH characters' })),
  attachments: Type.Optional(Type.Array(ObjectIdString, { maxItems: 100, uniqueItems: true, description: 'Ids from POST /api/media' })),
  replyTo: Type.Optional(ObjectIdString)
}, strict)
export const EditBody = Type.Object({ text: Type.String({ minLength: 1, maxLength: 100000 }) }, strict)
export const HistoryQuery = Type.Object({
  before: Type.Optional(Type.Integer({ maximum: MAX_INT, minimum: 1, description: 'Messages with seq below this' })),
  after: Type.Optional(Type.Integer({ maximum: MAX_INT, minimum: 0, description: 'Messages with seq above this' })),
  limit: Type.Optional(Limit(100, 50))
}, strict)
export const MessagePage = Type.Object({ messages: Type.Array(ref(Message)), hasMore: Type.Boolean() })
export const ChangesQuery = Type.Object({ since: Type.Integer({ maximum: MAX_INT, minimum: 0, description: 'changeSeq the client has; 0 for everything' }), limit: Type.Optional(Limit(500, 100)) }, strict)
export const ChangesPage = Type.Object({
  changes: Type.Array(ref(Message), { description: 'Current state of every message changed after `since`, oldest change first' }),
  cursor: Type.Integer({ maximum: MAX_INT, description: 'Pass as `since` for the next page' }),
  hasMore: Type.Boolean(),
  lastSeq: Type.Integer({ maximum: MAX_INT })
})
export const ThreadParams = Type.Object({ id: ObjectIdString, seq: Type.Integer({ minimum: 1, maximum: MAX_INT, description: 'Seq of the thread\'s first message' }) }, strict)
export const ThreadQuery = Type.Object({
  after: Type.Optional(Type.Integer({ maximum: MAX_INT, minimum: 0, description: 'Replies with seq above this' })),
  limit: Type.Optional(Limit(100, 50))
}, strict)
export const ThreadPage = Type.Object({
  root: ref(Message),
  replies: Type.Array(ref(Message), { description: 'Ascending by seq' }),
  hasMore: Type.Boolean(),
  lastReadSeq: Type.Integer({ maximum: MAX_INT, description: 'Your read position in this thread' }),
  unreadCount: Type.Integer({ maximum: MAX_INT, description: 'Replies from others after it' })
})
export const ReadBody = Type.Object({ seq: Type.Integer({ maximum: MAX_INT, minimum: 0 }) }, strict)
export const ReadState = Type.Object({ lastReadSeq: Type.Integer({ maximum: MAX_INT }), unreadCount: Type.Integer({ maximum: MAX_INT }) })
export const SearchQuery = Type.Object({
  q: Type.String({ minLength: 2, maxLength: 100 }),
  conversationId: Type.Optional(ObjectIdString),
  limit: Type.Optional(Limit(100, 20))
}, strict)
export const SearchResults = Type.Object({ messages: Type.Array(ref(Message)) })
