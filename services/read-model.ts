// The read model: what every client asks for all the time, served from Redis
// so that it costs the same whatever the document store and however much it
// holds. MongoDB stays the source of truth; every structure here is a bounded
// copy (a TTL on every key, a capped window of messages) that is rebuilt from
// MongoDB on a miss, so an emptied Redis costs one indexed query, never data.
//
// Coherence: a cached value never goes back to an older state. Writers put
// what the database returned after their write; fills from MongoDB after a
// miss put what they read; either only lands if it is newer than what is
// cached (conversations by `version`, messages by `changeSeq`, profiles by
// their update time), so a slow fill cannot overwrite a newer write. The
// per-user conversation lists, which cannot be versioned as a whole, carry a
// generation that every membership change bumps: a fill that started before
// the change is discarded. Pages an instance keeps to answer again are checked
// against the same copies (history pages) or a per-user stamp every write
// replaces after it lands (list pages): see keptResults and keptListPage.
import type { Collection, Db } from 'mongodb'
import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { getMany, inOrder, type RedisClient } from './redis-client.js'
import type { ConversationDoc, LastMessage, MembershipDoc } from './conversations.js'
import type { MessageDoc, MessageView } from './messages.js'
import { parseObjectId, toSelfUser, type PublicUser, type SelfUser, type UserDoc } from './users.js'

/** The latest this many messages of each conversation are kept: the largest page. */
export const MESSAGE_WINDOW = 100
const TTL_S = 24 * 3600
/**
 * How many of the messages a lagging conversation document has not counted are
 * read back to find who sent them (a sender has read up to their message). The
 * write behind keeps that lag to about a second of messages; past this many a
 * member's last send can be missed, and only their unread count shows it.
 */
const CATCH_UP_SENDERS_SCAN = 2000
const PROFILE_TTL_S = 3600
/** How long a list move waits for a fill: longer than conversation documents lag behind the sends. */
const LIST_MOVES_TTL_S = 3600

const keys = {
  conversation: (id: string) => `rm:conv:${id}`,
  // The list, its generation and the moves kept for its next fill share a hash slot: the scripts touch them together.
  userList: (userId: string) => `rm:list:{${userId}}`,
  userListGeneration: (userId: string) => `rm:listgen:{${userId}}`,
  userListMoves: (userId: string) => `rm:listmoves:{${userId}}`,
  // Changed by every write to what the user's list shows but profiles (see keptListPage).
  userListStamp: (userId: string) => `rm:liststamp:{${userId}}`,
  readStates: (userId: string) => `rm:read:${userId}`,
  profile: (userId: string) => `rm:user:${userId}`,
  window: (conversationId: string) => `rm:msgs:${conversationId}`,
  block: (blockerId: string, blockedId: string) => `rm:block:${blockerId}:${blockedId}`
}

// Values are "<version>|<json>"; a value lands only over an older one.
const scripts = {
  setIfNewer: {
    numberOfKeys: 1,
    lua: `local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+)|'))
  if v and v >= tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1`
  },
  hsetIfNewer: {
    numberOfKeys: 1,
    lua: `local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+)|'))
  if v and v >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('HDEL', KEYS[1], ARGV[5]) end
return 1`
  },
  // A list is only ever completed by a fill; a write moves entries of a list
  // that exists. Without one, the move is kept aside (for an hour) for the
  // next fill: that fill reads conversation documents whose activity times are
  // written behind the sends, and may have read them before this move.
  listTouch: {
    numberOfKeys: 3,
    lua: `redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[2])
else
  redis.call('ZADD', KEYS[2], 'GT', ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 0`
  },
  listFill: {
    numberOfKeys: 4,
    lua: `local gen = redis.call('GET', KEYS[2]) or '0'
if gen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], -1, '')
for i = 4, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
local moved = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #moved, 2 do redis.call('ZADD', KEYS[1], 'GT', moved[i + 1], moved[i]) end
redis.call('DEL', KEYS[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1`
  },
  // Newest first, below an exclusive (score, member) bound; '' is the marker that the list is complete.
  listPage: {
    numberOfKeys: 1,
    lua: `if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], 0, 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])`
  },
  listChanged: {
    numberOfKeys: 3,
    lua: `redis.call('INCR', KEYS[2]) redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[1])
if ARGV[2] == 'add' then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4]) end
else
  redis.call('ZREM', KEYS[1], ARGV[4])
end
return 0`
  }
} as const

type ScriptName = keyof typeof scripts
type Scripted = { [K in ScriptName]: (...args: Array<string | number>) => Promise<unknown> }

interface CachedConversation extends Omit<ConversationDoc, '_id' | 'createdAt' | 'updatedAt' | 'lastActivityAt' | 'lastMessage'> {
  _id: string
  createdAt: string
  updatedAt: string
  lastActivityAt: string
  lastMessage: (Omit<NonNullable<ConversationDoc['lastMessage']>, 'createdAt'> & { createdAt: string }) | null
}

export interface ReadState { lastReadSeq: number, mutedUntil: Date | null, mentionCount: number }

function splitVersioned (raw: string): string {
  return raw.slice(raw.indexOf('|') + 1)
}

/** Freezes plain objects and arrays all the way down (dates and ids are left as they are). */
function frozen<T> (value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value
  const proto = Object.getPrototypeOf(value) as unknown
  if (proto !== Object.prototype && proto !== Array.prototype) return value
  for (const inner of Object.values(value)) frozen(inner)
  return Object.freeze(value)
}

/**
 * Values decoded from Redis, kept per key for as long as Redis holds the same
 * text: every request of a busy list decodes the same profiles and
 * conversations again, and that was the largest cost of serving it. The text
 * just read from Redis is compared in full, so what is served is always what
 * Redis holds now, on every instance. Decoded values are shared between
 * requests, so nothing may change them: the test suite freezes them to prove
 * it (frozen objects serialise at about half the speed, so only there).
 */
function decodedValues<T extends object> (max: number, freeze: boolean, decode: (raw: string) => T): (key: string, raw: string) => T {
  const decoded = new LRUCache<string, { raw: string, value: T }>({ max })
  return (key, raw) => {
    const kept = decoded.get(key)
    if (kept?.raw === raw) return kept.value
    const value = freeze ? frozen(decode(raw)) : decode(raw)
    decoded.set(key, { raw, value })
    return value
  }
}

/**
 * Results computed from read-model values (a history page), kept per key while
 * every value they came from is the very object this instance hands out now.
 * Those objects stay the same exactly while Redis holds the same text
 * (decodedValues above), so a kept result is what computing it again would
 * give, and it is dropped as soon as one of its sources changes. Sources are
 * compared by identity (numbers and strings by value).
 */
function keptResults (maxBytes: number, bytesOf: (value: unknown) => number, freeze: boolean, counted: (hit: boolean) => void): <T> (key: string, sources: readonly unknown[], compute: () => T | Promise<T>) => Promise<T> {
  if (maxBytes === 0) return async (_key, _sources, compute) => compute()
  const kept = new LRUCache<string, { sources: readonly unknown[], value: unknown }>({ maxSize: maxBytes, sizeCalculation: (entry) => Math.max(1, bytesOf(entry.value)) })
  return async <T> (key: string, sources: readonly unknown[], compute: () => T | Promise<T>): Promise<T> => {
    const found = kept.get(key)
    const hit = found !== undefined && found.sources.length === sources.length && found.sources.every((source, i) => source === sources[i])
    counted(hit)
    if (hit) return found.value as T
    const computed = await compute()
    const value = freeze ? frozen(computed) : computed
    kept.set(key, { sources, value })
    return value
  }
}

// How many decoded values an instance keeps (each a few hundred bytes to a
// few kilobytes, plus the text it came from).
const DECODED_CONVERSATIONS = 5000
const DECODED_PROFILES = 10_000
const DECODED_MESSAGES = 20_000
// What a kept page costs, roughly: its objects and its serialised text (the
// bound is KEPT_PAGES_MB, per kind of page).
function historyPageBytes (page: { messages: MessageView[] }): number {
  let bytes = 200
  for (const m of page.messages) bytes += 800 + 4 * (m.text?.length ?? 0) + 600 * m.attachments.length + 100 * m.reactions.length + 30 * m.mentions.length
  return bytes
}
const LIST_CONVERSATION_BYTES = 1500
const LIST_MEMBER_BYTES = 600

function toCached (doc: ConversationDoc): string {
  return JSON.stringify(doc)
}

function fromCached (json: string, ObjectIdType: new (hex: string) => ConversationDoc['_id']): ConversationDoc {
  const c = JSON.parse(json) as CachedConversation
  return {
    ...c,
    _id: new ObjectIdType(c._id),
    createdAt: new Date(c.createdAt),
    updatedAt: new Date(c.updatedAt),
    lastActivityAt: new Date(c.lastActivityAt),
    lastMessage: c.lastMessage ? { ...c.lastMessage, createdAt: new Date(c.lastMessage.createdAt) } : null
  }
}

interface ProfileViews { self: SelfUser, public: PublicUser }

/** What a list page was computed from, besides what its stamp covers. */
export interface ComputedListPage<T> {
  value: T
  /** Every member shown, and their profiles as the read model handed them out (see profiles). */
  profileIds: string[]
  profiles: Map<string, PublicUser>
  /** When the page stops being true by itself (a mute it shows ends), in ms since the epoch. */
  validUntil: number
  /** How many conversations it shows, and how many members in all: what keeping it costs. */
  conversations: number
  members: number
}

interface KeptListPage { stamp: string, value: unknown, profileIds: string[], profiles: Array<PublicUser | undefined>, validUntil: number, bytes: number }

function profileViews (self: SelfUser): ProfileViews {
  const { email: _email, createdAt: _createdAt, ...profile } = self
  return { self, public: profile }
}

const profileVersion = (u: UserDoc): number => Math.max(u.updatedAt.getTime(), u.lastSeenAt?.getTime() ?? 0)

export type ReadModel = ReturnType<typeof createReadModel>

export function createReadModel (deps: {
  redis: RedisClient
  db: Db
  ObjectId: new (hex: string) => ConversationDoc['_id']
  toMessageView: (doc: MessageDoc) => MessageView
  /** The list preview of a message. */
  lastMessageOf: (doc: MessageDoc) => LastMessage
  /** Told how many lookups of a structure were answered from Redis (hits) and rebuilt from MongoDB (misses). */
  onLookups?: (structure: string, hits: number, misses: number) => void
  /** Freeze the decoded values shared between requests (tests: a change to one throws). */
  freezeDecoded?: boolean
  /** How much memory (estimated) kept history pages may take, and as much kept list pages; 0 keeps none (KEPT_PAGES_MB). */
  keptPagesBytes: number
}) {
  const { redis, db, ObjectId, toMessageView } = deps
  const counted = deps.onLookups ?? (() => {})
  for (const [name, script] of Object.entries(scripts)) {
    if (!(name in redis)) redis.defineCommand(name, script)
  }
  const r = redis as RedisClient & Scripted
  const conversations: Collection<ConversationDoc> = db.collection('conversations')
  const memberships: Collection<MembershipDoc> = db.collection('memberships')
  const messages: Collection<MessageDoc> = db.collection('messages')
  const users: Collection<UserDoc> = db.collection('users')
  const blocks = db.collection<{ _id: string }>('blocks')
  const freeze = deps.freezeDecoded === true
  const decodedConversation = decodedValues(DECODED_CONVERSATIONS, freeze, (raw) => fromCached(splitVersioned(raw), ObjectId))
  const decodedProfile = decodedValues(DECODED_PROFILES, freeze, (raw) => profileViews(JSON.parse(splitVersioned(raw)) as SelfUser))
  // Copies cached before messages had replies and threads lack the two fields.
  const decodedMessage = decodedValues(DECODED_MESSAGES, freeze, (raw) => {
    const view = JSON.parse(splitVersioned(raw)) as MessageView
    return { ...view, replyTo: view.replyTo ?? null, thread: view.thread ?? null, mentions: view.mentions ?? [] }
  })

  const { keptPagesBytes } = deps
  const keptLists = keptPagesBytes > 0 ? new LRUCache<string, KeptListPage>({ maxSize: keptPagesBytes, sizeCalculation: (page) => page.bytes }) : null
  const keptHistoryPage = keptResults(keptPagesBytes, (page) => historyPageBytes(page as { messages: MessageView[] }), freeze, (hit) => counted('history_page', hit ? 1 : 0, hit ? 0 : 1))
  // Stamps are unique across instances and restarts: a Redis that lost a stamp never hands an old one out again.
  const stampPrefix = randomUUID()
  let stamps = 0
  const newStamp = (): string => `${stampPrefix}.${++stamps}`
  const bumpListStamps = (userIds: string[]): Promise<unknown> => Promise.all(userIds.map((userId) => r.set(keys.userListStamp(userId), newStamp(), 'EX', TTL_S)))

  // ---- conversations -------------------------------------------------------

  /** Conversations by id (missing ones left out): one MGET, and one `$in` query for what was not cached. */
  async function conversationsById (ids: string[]): Promise<Map<string, ConversationDoc>> {
    const out = new Map<string, ConversationDoc>()
    if (ids.length === 0) return out
    const cached = await getMany(r, ids.map(keys.conversation))
    const missing: string[] = []
    ids.forEach((id, i) => {
      const raw = cached[i]
      if (raw) out.set(id, decodedConversation(id, raw))
      else missing.push(id)
    })
    counted('conversation', ids.length - missing.length, missing.length)
    if (missing.length > 0) {
      const objectIds = missing.map(parseObjectId).filter((id) => id !== null)
      const stored = objectIds.length > 0 ? await conversations.find({ _id: { $in: objectIds } }).toArray() : []
      const docs = await Promise.all(stored.map(caughtUp))
      for (const doc of docs) out.set(doc._id.toHexString(), doc)
      await putConversations(docs)
    }
    return out
  }

  /**
   * A conversation document as stored may lag its messages: its activity is
   * written behind (services/conversation-activity.ts), and a writer may stop
   * before it. The messages say how far it went: one indexed query finds a
   * change past the document's, and only then one more finds the last message.
   */
  async function caughtUp (doc: ConversationDoc): Promise<ConversationDoc> {
    const conversationId = doc._id.toHexString()
    const lastChange = await messages.find({ conversationId, changeSeq: { $gt: doc.changeSeq } }, { projection: { changeSeq: 1 } }).sort({ conversationId: 1, changeSeq: -1 }).limit(1).next()
    if (!lastChange) return doc
    const last = await messages.find({ conversationId }).sort({ conversationId: 1, seq: -1 }).limit(1).next()
    if (!last) return { ...doc, changeSeq: lastChange.changeSeq }
    const lastActivityAt = last.createdAt > doc.lastActivityAt ? last.createdAt : doc.lastActivityAt
    // What a member sent counts as read by them: the senders of the messages the document has not counted yet.
    const lastSentSeq = { ...doc.lastSentSeq }
    const uncounted = last.seq - doc.lastSeq > 1
      ? await messages.find({ conversationId, seq: { $gt: doc.lastSeq } }, { projection: { senderId: 1, seq: 1 } }).sort({ conversationId: 1, seq: -1 }).limit(CATCH_UP_SENDERS_SCAN).toArray()
      : [last]
    for (const message of uncounted) lastSentSeq[message.senderId] = Math.max(lastSentSeq[message.senderId] ?? 0, message.seq)
    return {
      ...doc,
      lastSeq: Math.max(doc.lastSeq, last.seq),
      changeSeq: lastChange.changeSeq,
      lastMessage: deps.lastMessageOf(last),
      lastActivityAt,
      updatedAt: lastActivityAt,
      lastSentSeq
    }
  }

  async function conversation (id: string): Promise<ConversationDoc | null> {
    return (await conversationsById([id])).get(id) ?? null
  }

  /** After a write: the conversation as it now stands, and its place in each member's list. */
  async function putConversations (docs: ConversationDoc[], options: { touchLists?: boolean } = {}): Promise<void> {
    if (docs.length === 0) return
    await inOrder(r, conversationWrites(docs, options.touchLists ?? false))
  }

  /** A write under the conversation's lock: its new or changed messages, then the conversation, then the lists. */
  async function putConversationAndMessages (doc: ConversationDoc, views: MessageView[], options: { touchLists: boolean }): Promise<void> {
    // The messages first: kept history pages are checked against the conversation alone.
    await inOrder(r, [() => putMessages(doc._id.toHexString(), views, doc.lastSeq), ...conversationWrites([doc], options.touchLists)])
  }

  function conversationWrites (docs: ConversationDoc[], touchLists: boolean): Array<() => Promise<unknown>> {
    return [
      () => Promise.all(docs.map((doc) => r.setIfNewer(keys.conversation(doc._id.toHexString()), doc.version ?? 0, toCached(doc), TTL_S))),
      // Then the members' list stamps: a list computed after reading a stamp shows every write made before it.
      () => Promise.all(docs.flatMap((doc) => {
        const id = doc._id.toHexString()
        if (!touchLists) return [bumpListStamps(doc.memberIds)]
        return doc.memberIds.map((member) => r.listTouch(keys.userList(member), keys.userListMoves(member), keys.userListStamp(member), doc.lastActivityAt.getTime(), id, LIST_MOVES_TTL_S, newStamp(), TTL_S))
      }))
    ]
  }

  // ---- per-user conversation lists ----------------------------------------

  /**
   * The ids of the user's conversations, latest activity first, after an
   * exclusive (time, id) cursor. Entries are filtered by the caller against
   * each conversation's own member list, which is the authority.
   */
  async function conversationIdsOf (userId: string, limit: number, after?: { t: number, id: string }): Promise<Array<{ id: string, t: number }>> {
    for (let attempt = 0; attempt < 3; attempt++) {
      // Page by score; entries with the cursor's own time are sorted out here.
      const max = after ? String(after.t) : '+inf'
      const page = await r.listPage(keys.userList(userId), max, 0, limit + 50, TTL_S) as string[] | null
      counted('list', page ? 1 : 0, page ? 0 : 1)
      if (page) {
        const entries: Array<{ id: string, t: number }> = []
        for (let i = 0; i < page.length; i += 2) {
          const id = page[i]!
          const t = Number(page[i + 1])
          if (id === '') continue
          if (after && t === after.t && id >= after.id) continue
          entries.push({ id, t })
        }
        return entries.sort((a, b) => b.t - a.t || (a.id < b.id ? 1 : -1)).slice(0, limit + 1)
      }
      await fillList(userId)
    }
    // Redis refused every fill (a membership change raced each one): answer from MongoDB.
    const docs = await conversations.find({ memberIds: userId }, { projection: { _id: 1, lastActivityAt: 1 } }).sort({ lastActivityAt: -1, _id: -1 }).toArray()
    return docs.map((d) => ({ id: d._id.toHexString(), t: d.lastActivityAt.getTime() }))
      .filter((e) => !after || e.t < after.t || (e.t === after.t && e.id < after.id)).slice(0, limit + 1)
  }

  /**
   * One indexed query (memberIds + lastActivityAt on MongoDB), stored unless a
   * membership change raced it, with the moves sends made while there was no list.
   */
  async function fillList (userId: string): Promise<void> {
    const generation = await r.get(keys.userListGeneration(userId)) ?? '0'
    const docs = await conversations.find({ memberIds: userId }, { projection: { _id: 1, lastActivityAt: 1 } }).toArray()
    const args = docs.flatMap((d) => [d.lastActivityAt.getTime(), d._id.toHexString()])
    await r.listFill(keys.userList(userId), keys.userListGeneration(userId), keys.userListMoves(userId), keys.userListStamp(userId), generation, TTL_S, newStamp(), ...args)
  }

  /** A user joined (or left) a conversation: their list learns it, and any fill in flight is discarded. */
  async function membershipChanged (userIds: string[], doc: ConversationDoc, change: 'add' | 'remove'): Promise<void> {
    if (userIds.length === 0) return
    await Promise.all(userIds.map((userId) =>
      r.listChanged(keys.userList(userId), keys.userListGeneration(userId), keys.userListStamp(userId), TTL_S, change, doc.lastActivityAt.getTime(), doc._id.toHexString(), newStamp())))
  }

  /**
   * A page of the user's list, kept by this instance and answered again while
   * nothing it shows has changed: one GET of the user's list stamp, which
   * every write to their list, their conversations and their read states
   * replaces after it lands, and the members' profiles (one MGET), compared
   * as the objects decoded from them (profiles change without touching lists).
   * A kept page also ends at the first mute it shows running out. Without a
   * stamp (new user, emptied Redis) one is set, and that page is not kept: the
   * stamp did not yet exist when its inputs were read.
   */
  async function keptListPage<T extends object> (userId: string, page: string, compute: () => Promise<ComputedListPage<T>>): Promise<T> {
    const key = `${userId}:${page}`
    if (!keptLists) return (await compute()).value
    const found = keptLists.get(key)
    const [stamp, profilesNow] = await Promise.all([
      r.get(keys.userListStamp(userId)),
      found ? profileViewsOf(found.profileIds) : Promise.resolve(new Map<string, ProfileViews>())
    ])
    const hit = found !== undefined && stamp === found.stamp && Date.now() < found.validUntil &&
      found.profileIds.every((id, i) => profilesNow.get(id)?.public === found.profiles[i])
    counted('list_page', hit ? 1 : 0, hit ? 0 : 1)
    if (hit) return found.value as T
    if (stamp === null) {
      await r.set(keys.userListStamp(userId), newStamp(), 'EX', TTL_S, 'NX')
      return (await compute()).value
    }
    const computed = await compute()
    const value = freeze ? frozen(computed.value) : computed.value
    keptLists.set(key, { stamp, value, profileIds: computed.profileIds, profiles: computed.profileIds.map((id) => computed.profiles.get(id)), validUntil: computed.validUntil, bytes: 200 + computed.conversations * LIST_CONVERSATION_BYTES + computed.members * LIST_MEMBER_BYTES })
    return value
  }

  // ---- read positions and mutes --------------------------------------------

  const encodeState = (m: Pick<MembershipDoc, 'lastReadSeq' | 'mutedUntil' | 'mentionCount'>): string => `${m.lastReadSeq}|${m.mutedUntil?.getTime() ?? 0}|${m.mentionCount ?? 0}`
  const decodeState = (raw: string): ReadState => {
    // Copies cached before mentions have two fields.
    const [read, muted, mentions] = raw.split('|')
    return { lastReadSeq: Number(read), mutedUntil: Number(muted) > 0 ? new Date(Number(muted)) : null, mentionCount: Number(mentions ?? 0) }
  }

  /** The user's read position and mute in each conversation: one HMGET, one `$in` query for what was not cached. */
  async function readStates (userId: string, conversationIds: string[]): Promise<Map<string, ReadState>> {
    const out = new Map<string, ReadState>()
    if (conversationIds.length === 0) return out
    const cached = await r.hmget(keys.readStates(userId), ...conversationIds)
    const missing = conversationIds.filter((id, i) => {
      const raw = cached[i]
      if (raw) out.set(id, decodeState(raw))
      return !raw
    })
    counted('read_state', conversationIds.length - missing.length, missing.length)
    if (missing.length > 0) {
      const docs = await memberships.find({ _id: { $in: missing.map((id) => `${id}:${userId}`) } }).toArray()
      const pipeline = r.pipeline() // one key: one slot
      for (const doc of docs) {
        out.set(doc.conversationId, { lastReadSeq: doc.lastReadSeq, mutedUntil: doc.mutedUntil, mentionCount: doc.mentionCount ?? 0 })
        // HSETNX: a write that landed meanwhile is newer than this read.
        pipeline.hsetnx(keys.readStates(userId), doc.conversationId, encodeState(doc))
      }
      pipeline.expire(keys.readStates(userId), TTL_S)
      await pipeline.exec()
    }
    return out
  }

  /** After a write of a membership: its full state as now stored. */
  async function putReadState (doc: Pick<MembershipDoc, 'conversationId' | 'userId' | 'lastReadSeq' | 'mutedUntil' | 'mentionCount'>): Promise<void> {
    await r.pipeline().hset(keys.readStates(doc.userId), doc.conversationId, encodeState(doc)).expire(keys.readStates(doc.userId), TTL_S).exec()
    await bumpListStamps([doc.userId])
  }

  /** Members just added to a conversation: their state is the one a new membership starts with. */
  async function putNewMembers (conversationId: string, userIds: string[]): Promise<void> {
    if (userIds.length === 0) return
    await Promise.all(userIds.flatMap((userId) => [
      r.hset(keys.readStates(userId), conversationId, encodeState({ lastReadSeq: 0, mutedUntil: null })),
      r.expire(keys.readStates(userId), TTL_S)
    ]))
    await bumpListStamps(userIds)
  }

  async function dropReadState (userId: string, conversationId: string): Promise<void> {
    await r.hdel(keys.readStates(userId), conversationId)
    await bumpListStamps([userId])
  }

  // ---- profiles --------------------------------------------------------------

  /** Profiles by id, as their owner sees them (with email) and as everyone else does (unknown ids left out). */
  async function profileViewsOf (userIds: string[]): Promise<Map<string, ProfileViews>> {
    const ids = [...new Set(userIds)]
    const out = new Map<string, ProfileViews>()
    if (ids.length === 0) return out
    const cached = await getMany(r, ids.map(keys.profile))
    const missing = ids.filter((id, i) => {
      const raw = cached[i]
      if (raw) out.set(id, decodedProfile(id, raw))
      return !raw
    })
    counted('profile', ids.length - missing.length, missing.length)
    const objectIds = missing.map(parseObjectId).filter((id) => id !== null)
    if (objectIds.length > 0) {
      const docs = await users.find({ _id: { $in: objectIds } }, { projection: { passwordHash: 0 } }).toArray()
      for (const doc of docs) out.set(doc._id.toHexString(), profileViews(toSelfUser(doc)))
      await putProfiles(docs)
    }
    return out
  }

  async function profiles (userIds: string[]): Promise<Map<string, PublicUser>> {
    const out = new Map<string, PublicUser>()
    for (const [id, views] of await profileViewsOf(userIds)) out.set(id, views.public)
    return out
  }

  const self = async (userId: string): Promise<SelfUser | null> => (await profileViewsOf([userId])).get(userId)?.self ?? null

  async function putProfiles (docs: UserDoc[]): Promise<void> {
    if (docs.length === 0) return
    await Promise.all(docs.map((doc) => r.setIfNewer(keys.profile(doc._id.toHexString()), profileVersion(doc), JSON.stringify(toSelfUser(doc)), PROFILE_TTL_S)))
  }

  // ---- blocks ----------------------------------------------------------------

  async function hasBlocked (blockerId: string, blockedId: string): Promise<boolean> {
    const key = keys.block(blockerId, blockedId)
    const cached = await r.get(key)
    counted('block', cached !== null ? 1 : 0, cached !== null ? 0 : 1)
    if (cached !== null) return cached === '1'
    const blocked = await blocks.countDocuments({ _id: `${blockerId}:${blockedId}` }, { limit: 1 }) > 0
    await r.set(key, blocked ? '1' : '0', 'EX', TTL_S, 'NX')
    return blocked
  }

  async function putBlock (blockerId: string, blockedId: string, blocked: boolean): Promise<void> {
    await r.set(keys.block(blockerId, blockedId), blocked ? '1' : '0', 'EX', TTL_S)
  }

  // ---- the latest messages -------------------------------------------------

  /**
   * Messages `from`..`to` (by seq) of a conversation whose last seq is
   * `lastSeq`: from the window when the range lies in it (one HMGET), the
   * rest with one range query, which then fills the window.
   */
  async function messageRange (conversationId: string, lastSeq: number, from: number, to: number): Promise<MessageView[]> {
    if (to < from) return []
    const windowFrom = Math.max(1, lastSeq - MESSAGE_WINDOW + 1)
    const cachedFrom = Math.max(from, windowFrom)
    const seqs: number[] = []
    for (let seq = cachedFrom; seq <= to; seq++) seqs.push(seq)
    const cached = seqs.length > 0 ? await r.hmget(keys.window(conversationId), ...seqs.map(String)) : []
    const found = new Map<number, MessageView>()
    seqs.forEach((seq, i) => {
      const raw = cached[i]
      if (raw) found.set(seq, decodedMessage(`${conversationId}:${seq}`, raw))
    })
    const missing = seqs.filter((seq) => !found.has(seq))
    counted('message', found.size, missing.length)
    const dbFrom = from < windowFrom ? from : missing[0]
    const dbTo = missing.length > 0 ? missing.at(-1)! : Math.min(to, windowFrom - 1)
    if (dbFrom !== undefined && dbFrom <= dbTo) {
      const docs = await messages.find({ conversationId, seq: { $gte: dbFrom, $lte: dbTo } }).sort({ seq: 1 }).toArray()
      const views = docs.map(toMessageView)
      for (const view of views) found.set(view.seq, view)
      await putMessages(conversationId, views.filter((v) => v.seq >= windowFrom), lastSeq)
    }
    const out: MessageView[] = []
    for (let seq = from; seq <= to; seq++) { const view = found.get(seq); if (view) out.push(view) }
    return out
  }

  /** Messages as now stored (sent, edited, deleted, reacted); those below the window are trimmed. */
  async function putMessages (conversationId: string, views: MessageView[], lastSeq: number): Promise<void> {
    if (views.length === 0) return
    await Promise.all(views.filter((view) => view.seq > lastSeq - MESSAGE_WINDOW).map((view) => {
      const below = view.seq - MESSAGE_WINDOW
      return r.hsetIfNewer(keys.window(conversationId), String(view.seq), view.changeSeq, JSON.stringify(view), TTL_S, below > 0 ? String(below) : '0')
    }))
  }

  return {
    conversation,
    conversationsById,
    putConversations,
    putConversationAndMessages,
    caughtUp,
    conversationIdsOf,
    membershipChanged,
    readStates,
    putReadState,
    putNewMembers,
    dropReadState,
    profiles,
    self,
    putProfiles,
    hasBlocked,
    putBlock,
    messageRange,
    putMessages,
    /** A history page computed from this conversation object and numbers (see keptResults). */
    keptHistoryPage,
    keptListPage
  }
}
