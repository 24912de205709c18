// Conversations (one-to-one and groups) and each member's own state in them.
//
// The conversation document carries everything the conversation list shows
// (members, last message, counters); per-member state (read position, mute)
// lives in `memberships`, one document per member. Reads go through the read
// model (services/read-model.ts): the list, a conversation, membership checks
// and read states come from Redis, rebuilt from these collections on a miss.
// Every write bumps the conversation's `version` and hands the stored document
// to the read model.
import { ObjectId, type Collection, type Db, type UpdateFilter } from 'mongodb'
import createError from '@fastify/error'
import { isDuplicateKey, parseObjectId, upsertRetrying, type PublicUser } from './users.js'
import type { ReadModel, ReadState } from './read-model.js'
import { decodeCursor, encodeCursor, UserNotFound, type PeopleService } from './people.js'
import type { Publish } from './events.js'
import type { ConversationLock } from './conversation-lock.js'
import type { Static } from '@sinclair/typebox'
import type { Conversation } from '../schemas/chat.js'

export const ConversationNotFound = createError('CONVERSATION_NOT_FOUND', 'No such conversation', 404)
export const NotAdmin = createError('NOT_ADMIN', 'Only an admin of this group may do that', 403)
export const NotAGroup = createError('NOT_A_GROUP', 'Only group conversations have titles and members to change', 400)
export const Blocked = createError('BLOCKED', 'This user does not accept messages from you', 403)
export const CannotMessageSelf = createError('CANNOT_MESSAGE_SELF', 'A direct conversation needs another user', 400)
export const GroupTooLarge = createError('GROUP_TOO_LARGE', 'The group would have more members than allowed (%s)', 400)

export interface LastMessage {
  seq: number
  senderId: string
  preview: string
  createdAt: Date
  deleted: boolean
}

export interface ConversationDoc {
  _id: ObjectId
  key: string
  type: 'direct' | 'group'
  title: string | null
  memberIds: string[]
  adminIds: string[]
  createdBy: string
  createdAt: Date
  updatedAt: Date
  lastActivityAt: Date
  /** Highest message seq: messages are numbered 1, 2, 3 … per conversation. */
  lastSeq: number
  /** Bumped by every change to a message; the catch-up cursor. */
  changeSeq: number
  lastMessage: LastMessage | null
  /**
   * Per member, the seq of the last message they sent: what you wrote counts as
   * read, without a second write on every send.
   */
  lastSentSeq: Record<string, number>
  /** Bumped by every update: the read model keeps the newest version it was given. */
  version: number
}

export interface MembershipDoc {
  _id: string // `${conversationId}:${userId}`
  conversationId: string
  userId: string
  lastReadSeq: number
  mutedUntil: Date | null
  joinedAt: Date
  /** Messages after lastReadSeq that mention the member (recounted when they read). */
  mentionCount?: number
  /** Read position in each thread the member opened, by the root's seq (`s<seq>`). */
  threadReads?: Record<string, number>
}

export type ConversationView = Static<typeof Conversation>

const membershipId = (conversationId: string, userId: string): string => `${conversationId}:${userId}`

export type ConversationService = ReturnType<typeof createConversationService>

export function createConversationService (db: Db, people: PeopleService, readModel: ReadModel, publish: Publish, limits: { groupMaxMembers: number }, withConversationLock: ConversationLock) {
  const conversations: Collection<ConversationDoc> = db.collection<ConversationDoc>('conversations')
  const memberships: Collection<MembershipDoc> = db.collection<MembershipDoc>('memberships')

  async function ensureMemberships (conversationId: string, userIds: string[]): Promise<void> {
    if (userIds.length === 0) return
    const now = new Date()
    await upsertRetrying(() => memberships.bulkWrite(userIds.map((userId) => ({
      updateOne: {
        filter: { _id: membershipId(conversationId, userId) },
        update: { $setOnInsert: { conversationId, userId, lastReadSeq: 0, mutedUntil: null, joinedAt: now } },
        upsert: true
      }
    })), { ordered: false }))
  }

  /**
   * Changes the stored conversation under its lock, starting from the read
   * model's copy (the live state: the database learns the activity of
   * messages behind the request), which this write also brings the document
   * up to. The copy then takes the result.
   */
  async function update (conversationId: string, change: (now: ConversationDoc) => UpdateFilter<ConversationDoc> | null): Promise<ConversationDoc> {
    return withConversationLock(conversationId, async () => {
      const now = await readModel.conversation(conversationId)
      if (!now) throw new ConversationNotFound()
      const operations = change(now)
      if (operations === null) return now
      const updated = await conversations.findOneAndUpdate({ _id: now._id }, {
        ...operations,
        $set: { ...operations.$set, lastMessage: now.lastMessage, lastActivityAt: now.lastActivityAt, lastSentSeq: now.lastSentSeq, updatedAt: new Date() },
        $max: { lastSeq: now.lastSeq, changeSeq: now.changeSeq, version: (now.version ?? 0) + 1 }
      }, { returnDocument: 'after' })
      if (!updated) throw new ConversationNotFound()
      await readModel.putConversations([updated])
      return updated
    })
  }

  async function assertUsersExist (userIds: string[]): Promise<void> {
    const found = await people.summaries(userIds)
    if (userIds.some((id) => !found.has(id))) throw new UserNotFound()
  }

  /** The conversation, if `userId` is a member; to anyone else it does not exist. */
  async function getForMember (conversationId: string, userId: string): Promise<ConversationDoc> {
    const conversation = parseObjectId(conversationId) ? await readModel.conversation(conversationId) : null
    if (!conversation?.memberIds.includes(userId)) throw new ConversationNotFound()
    return conversation
  }

  interface ViewInputs { profiles: Map<string, PublicUser>, stateById: Map<string, ReadState>, now: Date }

  async function viewInputs (docs: ConversationDoc[], userId: string): Promise<ViewInputs> {
    const [profiles, stateById] = await Promise.all([
      readModel.profiles(docs.flatMap((d) => d.memberIds)),
      readModel.readStates(userId, docs.map((d) => d._id.toHexString()))
    ])
    return { profiles, stateById, now: new Date() }
  }

  async function views (docs: ConversationDoc[], userId: string): Promise<ConversationView[]> {
    if (docs.length === 0) return []
    return viewsOf(docs, userId, await viewInputs(docs, userId))
  }

  function viewsOf (docs: ConversationDoc[], userId: string, { profiles, stateById, now }: ViewInputs): ConversationView[] {
    return docs.map((d) => {
      const id = d._id.toHexString()
      const state = stateById.get(id)
      const lastReadSeq = Math.min(Math.max(state?.lastReadSeq ?? 0, d.lastSentSeq?.[userId] ?? 0), d.lastSeq)
      return {
        id,
        type: d.type,
        title: d.title,
        members: d.memberIds.map((m) => profiles.get(m)).filter((p): p is PublicUser => p !== undefined),
        adminIds: d.adminIds,
        createdAt: d.createdAt.toISOString(),
        lastActivityAt: d.lastActivityAt.toISOString(),
        lastSeq: d.lastSeq,
        changeSeq: d.changeSeq,
        lastMessage: d.lastMessage ? { ...d.lastMessage, createdAt: d.lastMessage.createdAt.toISOString() } : null,
        lastReadSeq,
        unreadCount: d.lastSeq - lastReadSeq,
        unreadMentionCount: state?.mentionCount ?? 0,
        mutedUntil: state?.mutedUntil && state.mutedUntil > now ? state.mutedUntil.toISOString() : null
      }
    })
  }

  const view = async (doc: ConversationDoc, userId: string): Promise<ConversationView> => (await views([doc], userId))[0]!

  async function announce (doc: ConversationDoc, extraUserIds: string[] = []): Promise<void> {
    const summary = { id: doc._id.toHexString(), type: doc.type, title: doc.title, memberIds: doc.memberIds, adminIds: doc.adminIds }
    await publish(doc.memberIds, { type: 'conversation.updated', data: { conversation: summary } })
    if (extraUserIds.length > 0) await publish(extraUserIds, { type: 'conversation.removed', data: { conversationId: summary.id } })
  }

  function newConversation (type: 'direct' | 'group', key: string, creatorId: string, memberIds: string[], title: string | null, _id = new ObjectId()): ConversationDoc {
    const now = new Date()
    return {
      _id,
      key,
      type,
      title,
      memberIds,
      adminIds: type === 'group' ? [creatorId] : [],
      createdBy: creatorId,
      createdAt: now,
      updatedAt: now,
      lastActivityAt: now,
      lastSeq: 0,
      changeSeq: 0,
      lastMessage: null,
      lastSentSeq: {},
      version: 0
    }
  }

  /** The one conversation of a pair: created the first time (created: true), found after. */
  async function createDirect (userId: string, otherId: string): Promise<{ conversation: ConversationDoc, created: boolean }> {
    if (userId === otherId) throw new CannotMessageSelf()
    await assertUsersExist([otherId])
    if (await people.hasBlocked(otherId, userId)) throw new Blocked()
    const pair = [userId, otherId].sort()
    const key = `direct:${pair[0]}:${pair[1]}`
    let created = true
    let conversation = newConversation('direct', key, userId, pair, null)
    try {
      await conversations.insertOne(conversation)
    } catch (err) {
      if (!isDuplicateKey(err)) throw err
      // Concurrent or earlier creation: the unique key makes it the same one.
      conversation = await readModel.caughtUp((await conversations.findOne({ key }))!)
      created = false
    }
    // Also repairs memberships and lists if an earlier creation stopped half-way.
    await ensureMemberships(conversation._id.toHexString(), pair)
    if (created) await readModel.putNewMembers(conversation._id.toHexString(), pair)
    await readModel.putConversations([conversation])
    await readModel.membershipChanged(pair, conversation, 'add')
    if (created) await announce(conversation)
    return { conversation, created }
  }

  async function createGroup (userId: string, title: string, memberIds: string[]): Promise<ConversationDoc> {
    const members = [...new Set([userId, ...memberIds])]
    if (members.length > limits.groupMaxMembers) throw new GroupTooLarge(String(limits.groupMaxMembers))
    await assertUsersExist(members)
    const _id = new ObjectId()
    const conversation = newConversation('group', `group:${_id.toHexString()}`, userId, members, title, _id)
    await conversations.insertOne(conversation)
    await ensureMemberships(_id.toHexString(), members)
    await readModel.putNewMembers(_id.toHexString(), members)
    await readModel.putConversations([conversation])
    await readModel.membershipChanged(members, conversation, 'add')
    await announce(conversation)
    return conversation
  }

  const isListCursor = (v: unknown): v is { t: number, id: string } =>
    typeof v === 'object' && v !== null && typeof (v as { t: unknown }).t === 'number' && typeof (v as { id: unknown }).id === 'string' && parseObjectId((v as { id: string }).id) !== null

  /**
   * The user's conversations, latest activity first, from the read model: one
   * sorted-set page of ids, then the documents (MGET). The conversation's own
   * member list is the authority, so an entry left over from a departure is
   * passed over.
   */
  async function memberConversations (userId: string, limit: number, after?: { t: number, id: string }): Promise<{ docs: ConversationDoc[], more: boolean }> {
    const docs: ConversationDoc[] = []
    let cursor = after
    for (let round = 0; round < 5; round++) {
      const entries = await readModel.conversationIdsOf(userId, limit - docs.length, cursor)
      const page = entries.slice(0, limit - docs.length)
      const byId = await readModel.conversationsById(page.map((e) => e.id))
      for (const entry of page) {
        const doc = byId.get(entry.id)
        if (doc?.memberIds.includes(userId)) docs.push(doc)
      }
      if (entries.length <= page.length) return { docs, more: false }
      if (docs.length >= limit) return { docs, more: true }
      const last = page.at(-1)!
      cursor = { t: last.t, id: last.id }
    }
    return { docs, more: true }
  }

  /** The user's conversations, latest activity first. */
  async function list (userId: string, limit: number, cursor?: string): Promise<{ conversations: ConversationView[], nextCursor: string | null }> {
    const after = cursor ? decodeCursor(cursor, isListCursor) : undefined
    // A busy client asks again and again for a list that has not changed.
    return readModel.keptListPage(userId, `${limit}:${cursor ?? ''}`, async () => {
      const { docs, more } = await memberConversations(userId, limit, after)
      const inputs = await viewInputs(docs, userId)
      const last = docs.at(-1)
      const now = inputs.now.getTime()
      const mutesEnding = [...inputs.stateById.values()].map((state) => state.mutedUntil?.getTime() ?? 0).filter((until) => until > now)
      return {
        value: {
          conversations: viewsOf(docs, userId, inputs),
          nextCursor: more && last ? encodeCursor({ t: last.lastActivityAt.getTime(), id: last._id.toHexString() }) : null
        },
        profileIds: [...new Set(docs.flatMap((d) => d.memberIds))],
        profiles: inputs.profiles,
        validUntil: Math.min(Infinity, ...mutesEnding),
        conversations: docs.length,
        members: docs.reduce((n, d) => n + d.memberIds.length, 0)
      }
    })
  }

  /** Everyone who shares a conversation with the user (the user included), over their latest 1,000 conversations. */
  async function contacts (userId: string): Promise<string[]> {
    const ids = new Set((await memberConversations(userId, 1000)).docs.flatMap((c) => c.memberIds))
    ids.add(userId)
    return [...ids]
  }

  function assertAdmin (doc: ConversationDoc, userId: string): void {
    if (doc.type !== 'group') throw new NotAGroup()
    if (!doc.adminIds.includes(userId)) throw new NotAdmin()
  }

  /** The conversation, if `userId` may manage its integrations (webhooks): an admin of a group, either member of a direct conversation. */
  async function getForManager (conversationId: string, userId: string): Promise<ConversationDoc> {
    const doc = await getForMember(conversationId, userId)
    if (doc.type === 'group' && !doc.adminIds.includes(userId)) throw new NotAdmin()
    return doc
  }

  async function rename (conversationId: string, userId: string, title: string): Promise<ConversationDoc> {
    const doc = await getForMember(conversationId, userId)
    assertAdmin(doc, userId)
    const updated = await update(conversationId, () => ({ $set: { title } }))
    await announce(updated)
    return updated
  }

  async function addMembers (conversationId: string, userId: string, userIds: string[]): Promise<ConversationDoc> {
    const doc = await getForMember(conversationId, userId)
    assertAdmin(doc, userId)
    const adding = [...new Set(userIds)].filter((id) => !doc.memberIds.includes(id))
    if (doc.memberIds.length + adding.length > limits.groupMaxMembers) throw new GroupTooLarge(String(limits.groupMaxMembers))
    await assertUsersExist(adding)
    if (adding.length === 0) return doc
    await ensureMemberships(conversationId, adding)
    await readModel.putNewMembers(conversationId, adding)
    const updated = await update(conversationId, () => ({ $addToSet: { memberIds: { $each: adding } } }))
    await readModel.membershipChanged(adding, updated, 'add')
    await announce(updated)
    return updated
  }

  /** Admins remove others; anyone may remove themself (leave). */
  async function removeMember (conversationId: string, actorId: string, targetId: string): Promise<ConversationDoc | null> {
    const doc = await getForMember(conversationId, actorId)
    if (doc.type !== 'group') throw new NotAGroup()
    if (actorId !== targetId && !doc.adminIds.includes(actorId)) throw new NotAdmin()
    if (!doc.memberIds.includes(targetId)) throw new UserNotFound()
    const updated = await update(conversationId, (now) => {
      const memberIds = now.memberIds.filter((id) => id !== targetId)
      const adminIds = now.adminIds.filter((id) => id !== targetId)
      // A group is never left without an admin while it has members.
      if (adminIds.length === 0 && memberIds.length > 0) adminIds.push(memberIds[0]!)
      return { $set: { memberIds, adminIds } }
    })
    await memberships.deleteOne({ _id: membershipId(conversationId, targetId) })
    await readModel.membershipChanged([targetId], updated, 'remove')
    await readModel.dropReadState(targetId, conversationId)
    await announce(updated, [targetId])
    return actorId === targetId ? null : updated
  }

  async function mute (conversationId: string, userId: string, until: Date | null): Promise<ConversationDoc> {
    const doc = await getForMember(conversationId, userId)
    await ensureMemberships(conversationId, [userId])
    const state = await memberships.findOneAndUpdate({ _id: membershipId(conversationId, userId) }, { $set: { mutedUntil: until } }, { returnDocument: 'after' })
    if (state) await readModel.putReadState(state)
    return doc
  }

  /** Read up to `seq` (clamped to the last message); never moves backwards. */
  async function threadReadSeq (conversationId: string, userId: string, rootSeq: number): Promise<number> {
    const doc = await memberships.findOne({ _id: membershipId(conversationId, userId) }, { projection: { threadReads: 1 } })
    return doc?.threadReads?.[`s${rootSeq}`] ?? 0
  }

  /** Moves the member's read position in a thread forward (never back); returns it. */
  /** `conversation`: as the caller read it, after checking the user is a member. */
  async function markThreadRead (conversation: ConversationDoc, userId: string, rootSeq: number, seq: number): Promise<number> {
    const target = Math.min(seq, conversation.lastSeq)
    const after = await memberships.findOneAndUpdate({ _id: membershipId(conversation._id.toHexString(), userId) }, { $max: { [`threadReads.s${rootSeq}`]: target } }, { returnDocument: 'after' })
    return after?.threadReads?.[`s${rootSeq}`] ?? target
  }

  /** These members were mentioned in a new message: their unread mention count goes up. */
  async function mentioned (conversationId: string, userIds: string[]): Promise<void> {
    await Promise.all(userIds.map(async (userId) => {
      const after = await memberships.findOneAndUpdate({ _id: membershipId(conversationId, userId) }, { $inc: { mentionCount: 1 } }, { returnDocument: 'after' })
      if (after) await readModel.putReadState(after)
    }))
  }

  async function markRead (conversationId: string, userId: string, seq: number): Promise<{ lastReadSeq: number, unreadCount: number }> {
    const doc = await getForMember(conversationId, userId)
    const target = Math.min(seq, doc.lastSeq)
    const before = await memberships.findOneAndUpdate({ _id: membershipId(conversationId, userId) }, { $max: { lastReadSeq: target } }, { returnDocument: 'before' })
    if (before && (before.mentionCount ?? 0) > 0) {
      // Mentions still unread are those after the new read position: recounted (one indexed count).
      const read = Math.max(before.lastReadSeq, target)
      const mentionCount = await db.collection('messages').countDocuments({ conversationId, mentions: userId, seq: { $gt: read } })
      const after = await memberships.findOneAndUpdate({ _id: membershipId(conversationId, userId) }, { $set: { mentionCount } }, { returnDocument: 'after' })
      if (after) await readModel.putReadState(after)
    } else if (before) await readModel.putReadState({ ...before, lastReadSeq: Math.max(before.lastReadSeq, target) })
    const previous = Math.max(before?.lastReadSeq ?? 0, doc.lastSentSeq?.[userId] ?? 0)
    const lastReadSeq = Math.max(previous, target)
    if (lastReadSeq > previous) {
      await publish(doc.memberIds, { type: 'read.updated', data: { conversationId, userId, lastReadSeq } })
    }
    return { lastReadSeq, unreadCount: Math.max(0, doc.lastSeq - lastReadSeq) }
  }

  async function memberConversationIds (userId: string, max: number): Promise<string[]> {
    return (await memberConversations(userId, max)).docs.map((d) => d._id.toHexString())
  }

  return {
    collection: conversations,
    memberships,
    membershipId,
    getForMember,
    view,
    createDirect,
    createGroup,
    list,
    getForManager,
    rename,
    addMembers,
    removeMember,
    mute,
    markRead,
    mentioned,
    threadReadSeq,
    markThreadRead,
    memberConversationIds,
    contacts
  }
}
