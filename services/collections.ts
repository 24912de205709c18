import type { Collection, Db, Document, Filter, IndexDescription, WithId } from 'mongodb'

// Every query path has its index here; they are created at boot and creating an
// existing index is a no-op, so boot is idempotent. Only plain, unique and
// compound indexes: TTL and partial indexes do not exist on FerretDB 1.24.
export const indexes: Record<string, IndexDescription[]> = {
  users: [
    { key: { email: 1 }, name: 'email_unique', unique: true },
    { key: { usernameLower: 1 }, name: 'username_unique', unique: true },
    { key: { displayNameLower: 1 }, name: 'display_name' },
    { key: { 'bot.ownerId': 1, createdAt: 1 }, name: 'bot_owner' }
  ],
  media: [
    { key: { ownerId: 1, createdAt: -1 }, name: 'owner' }
  ],
  conversations: [
    // direct:<a>:<b> for one-to-one (so creating it twice finds the same one), group:<id> for groups.
    { key: { key: 1 }, name: 'key_unique', unique: true },
    { key: { memberIds: 1, lastActivityAt: -1, _id: -1 }, name: 'member_activity' }
  ],
  push_subscriptions: [
    // The endpoint is the device: registering it again moves it, never doubles it.
    { key: { endpoint: 1 }, name: 'endpoint_unique', unique: true },
    { key: { userId: 1, createdAt: -1 }, name: 'user' }
  ],
  webhooks: [
    { key: { conversationId: 1, createdAt: 1 }, name: 'conversation' }
  ],
  api_keys: [
    { key: { botId: 1, createdAt: 1 }, name: 'bot' }
  ],
  messages: [
    // History pages are ranges of seq; catch-up pages ranges of changeSeq. Both
    // unique: a number handed out twice is refused, and the sender repairs.
    { key: { conversationId: 1, seq: 1 }, name: 'conversation_seq_unique', unique: true },
    { key: { conversationId: 1, changeSeq: 1 }, name: 'conversation_change_unique', unique: true },
    // Idempotency: one message per sender and clientMsgId in a conversation.
    { key: { conversationId: 1, senderId: 1, clientMsgId: 1 }, name: 'client_msg_unique', unique: true },
    // Threads: the replies to one root, by seq (pages, counts, the replies that quote a message).
    { key: { conversationId: 1, 'replyTo.rootSeq': 1, seq: 1 }, name: 'thread' },
    // Unread mentions of a member: recounted when they read.
    { key: { conversationId: 1, mentions: 1, seq: 1 }, name: 'mentions' },
    // A user's own messages, for their data export (rare, but must not scan every message).
    { key: { senderId: 1, createdAt: 1, _id: 1 }, name: 'sender' }
  ]
}

// Indexes an earlier version created that the ones above replace.
const replaced: Record<string, string[]> = { messages: ['conversation_changes'] }

/**
 * Documents by _id, in the order asked, missing ones left out. One lookup per
 * id, in parallel, for the short lists this is used for (a page of
 * conversations, their members): FerretDB 1.24 (SQLite) runs a filter of _id
 * alone in SQL, about ten times cheaper than the decode-everything scan it
 * does for `$in` or any other filter. On MongoDB the lookups are as cheap.
 */
export async function findByIds<T extends Document> (collection: Collection<T>, ids: Array<WithId<T>['_id']>, projection?: Document): Promise<Array<WithId<T>>> {
  const docs: Array<WithId<T> | null> = await Promise.all(ids.map((_id) => collection.findOne({ _id } as Filter<T>, projection ? { projection } : {})))
  return docs.filter((d) => d !== null)
}

export async function ensureIndexes (db: Db): Promise<void> {
  for (const [collection, names] of Object.entries(replaced)) {
    for (const name of names) await db.collection(collection).dropIndex(name).catch(() => { /* not there: nothing to replace */ })
  }
  // One index per createIndexes command: FerretDB 1.24 drops the connection when
  // a multi-index createIndexes names indexes that all exist already.
  await Promise.all(Object.entries(indexes).map(async ([collection, specs]) => {
    for (const spec of specs) await db.collection(collection).createIndexes([spec])
  }))
}
