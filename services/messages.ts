// Messages: numbered 1, 2, 3 … per conversation with no gap and no duplicate,
// idempotent by the sender's clientMsgId, edited and soft-deleted by their
// sender, with reactions. Every change also takes the next value of the
// conversation's changeSeq, which is what catch-up pages by.
//
// Writes to one conversation are serialised by a Redis mutex shared by every
// instance, so numbers are handed out in order and a change is stored before
// the next one is numbered (a reader that saw change N has seen every change
// before it). Under the mutex the next numbers come from the read model's copy
// of the conversation, which every write under the mutex keeps current, so a
// send waits for one database write, its message (sends queued for the same
// conversation on this instance share one insert); the conversation document
// is written behind (services/conversation-activity.ts). The unique
// indexes (conversation+seq, conversation+changeSeq, conversation+sender+
// clientMsgId) are the last word: a number found taken (a sender died between
// its two writes, or the copy was lost) is repaired from the messages
// themselves and the send retried, never stored twice.
import { createHash } from 'node:crypto'
import { ObjectId, type Collection, type Db } from 'mongodb'
import escapeStringRegexp from 'escape-string-regexp'
import createError from '@fastify/error'
import { isDuplicateKey, parseObjectId } from './users.js'
import { Blocked, type ConversationDoc, type ConversationService, type LastMessage } from './conversations.js'
import type { ReadModel } from './read-model.js'
import type { MediaInfo, MediaService } from './media.js'
import type { Static } from '@sinclair/typebox'
import type { Message } from '../schemas/chat.js'
import type { Publish } from './events.js'
import { Busy, type ConversationLock } from './conversation-lock.js'
import type { ConversationActivity } from './conversation-activity.js'
import { createGroupInsert } from './group-insert.js'

export { Busy }

export const MessageNotFound = createError('MESSAGE_NOT_FOUND', 'No such message', 404)
export const NotSender = createError('NOT_SENDER', 'Only the sender may change this message', 403)
export const MessageDeleted = createError('MESSAGE_DELETED', 'This message was deleted', 409)
export const EmptyMessage = createError('EMPTY_MESSAGE', 'A message needs text or at least one attachment', 400)
export const MessageTooLong = createError('MESSAGE_TOO_LONG', 'The text is longer than %s characters', 400)
export const TooManyAttachments = createError('TOO_MANY_ATTACHMENTS', 'At most %s attachments per message', 400)
export const TooManyReactions = createError('TOO_MANY_REACTIONS', 'This message has as many reactions as it can take', 409)
export const ClientMsgIdReused = createError('CLIENT_MSG_ID_REUSED', 'This clientMsgId was already used for a different message', 409)
export const ReplyTargetNotFound = createError('REPLY_TARGET_NOT_FOUND', 'replyTo must be a message of the same conversation', 400)
export const ThreadNotFound = createError('THREAD_NOT_FOUND', 'No message with this seq starts a thread here', 404)

const MAX_REACTIONS_PER_MESSAGE = 200
/** The most one page of changes may weigh, as JSON. */
export const PAGE_MAX_BYTES = 1024 * 1024

export interface ChangesPage {
  changes: MessageView[]
  cursor: number
  hasMore: boolean
  lastSeq: number
  /** Size of `changes` as JSON; not sent. */
  bytes: number
}

export interface Reaction { emoji: string, userId: string }

export interface MessageDoc {
  _id: ObjectId
  conversationId: string
  seq: number
  changeSeq: number
  senderId: string
  clientMsgId: string
  text: string | null
  attachments: MediaInfo[]
  reactions: Reaction[]
  createdAt: Date
  editedAt: Date | null
  deletedAt: Date | null
  /** A reply: its parent (a snapshot of it, a tombstone once the parent is deleted) and the root of its thread. */
  replyTo?: { id: string, seq: number, rootSeq: number, senderId: string, preview: string, deleted: boolean }
  /** Members mentioned by @username in the text, resolved when it was sent. */
  mentions?: string[]
  /** A thread's root: how many replies it has and when the last came (kept under the conversation lock). */
  thread?: { replyCount: number, lastReplyAt: Date }
}

export type MessageView = Static<typeof Message>

/** What every client sees of a message: a deleted one is a tombstone with no content. */
export function toMessageView (m: MessageDoc): MessageView {
  const grouped = new Map<string, string[]>()
  if (!m.deletedAt) for (const r of m.reactions) grouped.set(r.emoji, [...(grouped.get(r.emoji) ?? []), r.userId])
  return {
    id: m._id.toHexString(),
    conversationId: m.conversationId,
    seq: m.seq,
    changeSeq: m.changeSeq,
    senderId: m.senderId,
    clientMsgId: m.clientMsgId,
    text: m.deletedAt ? null : m.text,
    attachments: m.deletedAt ? [] : m.attachments,
    reactions: [...grouped].map(([emoji, userIds]) => ({ emoji, count: userIds.length, userIds })),
    createdAt: m.createdAt.toISOString(),
    editedAt: m.editedAt?.toISOString() ?? null,
    deleted: m.deletedAt !== null,
    deletedAt: m.deletedAt?.toISOString() ?? null,
    replyTo: m.replyTo ?? null,
    mentions: m.mentions ?? [],
    thread: m.thread ? { replyCount: m.thread.replyCount, lastReplyAt: m.thread.lastReplyAt.toISOString() } : null
  }
}

/**
 * A message's id follows from its conversation and seq: two messages under one
 * seq are one duplicate _id, whatever the indexes.
 */
export function messageIdFor (conversationId: string, seq: number): ObjectId {
  return new ObjectId(createHash('sha256').update(`${conversationId}#${seq}`).digest().subarray(0, 12))
}

const preview = (m: Pick<MessageDoc, 'text' | 'attachments'>): string => m.text ? m.text.slice(0, 120) : m.attachments.length > 0 ? '[image]' : ''

/** What the conversation list shows of a message. */
export function lastMessageOf (m: MessageDoc): LastMessage {
  return { seq: m.seq, senderId: m.senderId, preview: m.deletedAt ? '' : preview(m), createdAt: m.createdAt, deleted: m.deletedAt !== null }
}

export interface SendInput {
  clientMsgId: string
  text?: string
  attachments?: string[]
  /** The id of the message this one replies to (same conversation). */
  replyTo?: string
}

/** A stored change of a message, as push notifications and webhooks are told of it. */
export interface StoredChange {
  type: 'message.created' | 'message.updated' | 'message.deleted' | 'reaction.updated'
  memberIds: string[]
  actorId: string
  message: MessageView
}

export interface MessageLimits {
  maxLength: number
  maxAttachments: number
}

/** What a send stores; its numbers and times are given when its turn comes. */
type SendFields = Pick<MessageDoc, 'senderId' | 'clientMsgId' | 'text' | 'attachments' | 'replyTo' | 'mentions'>
interface StoredSend { doc: MessageDoc, created: boolean }
interface QueuedSend {
  fields: SendFields
  /** The sender's right to write here, still being checked when the send queues: it must pass before the send is stored. */
  mayWrite: Promise<void>
  resolve: (stored: StoredSend) => void
  reject: (err: unknown) => void
}
/** Messages in one insert of a turn (a turn with more takes several). */
const SEND_BATCH_MAX = 50

type MessageUpdate = { $set?: Record<string, unknown>, $addToSet?: Record<string, unknown>, $pull?: Record<string, unknown> }

export type MessageService = ReturnType<typeof createMessageService>

export function createMessageService (deps: {
  db: Db
  conversations: ConversationService
  readModel: ReadModel
  media: MediaService
  publish: Publish
  limits: MessageLimits
  /** Serialises the writes of one conversation across instances. */
  withConversationLock: ConversationLock
  /** Writes each conversation's new activity to the database, behind the request. */
  activity: ConversationActivity
  /** Told of every stored message change, after it is stored (push notifications and webhooks). */
  onStored?: (change: StoredChange) => Promise<void>
}) {
  const { db, conversations, readModel, media, publish, limits, withConversationLock, activity } = deps
  const messages: Collection<MessageDoc> = db.collection<MessageDoc>('messages')

  /** Members' sockets and the delivery jobs hear of a stored change together. */
  async function announce (stored: StoredChange): Promise<void> {
    await Promise.all([
      publish(stored.memberIds, { type: stored.type, data: { message: stored.message } }),
      deps.onStored?.(stored)
    ])
  }

  /** The conversation as it stands, read under its lock: the read model holds every write made under it. */
  async function current (conversationId: string): Promise<ConversationDoc> {
    const doc = await readModel.conversation(conversationId)
    if (!doc) throw new MessageNotFound()
    return doc
  }

  /**
   * A number the conversation was about to hand out is taken: a sender stopped
   * between storing its message and recording it on the conversation, or the
   * read model's copy was lost and rebuilt from a conversation document that
   * lagged. The messages say how far the numbers went.
   */
  async function repair (conversation: ConversationDoc): Promise<void> {
    const repaired = await readModel.caughtUp(conversation)
    if (repaired !== conversation) await settle({ ...repaired, version: (conversation.version ?? 0) + 1 }, true)
  }

  /** The conversation's new state (under its lock): at once in the read model, soon in the database. */
  async function settle (next: ConversationDoc, touchLists: boolean, views: MessageView[] = []): Promise<void> {
    await readModel.putConversationAndMessages(next, views, { touchLists })
    await activity.record(next)
  }

  function validateContent (input: { text?: string, attachments?: string[] }): void {
    const text = input.text ?? ''
    const attachments = input.attachments ?? []
    if (text.trim() === '' && attachments.length === 0) throw new EmptyMessage()
    if (text.length > limits.maxLength) throw new MessageTooLong(String(limits.maxLength))
    if (attachments.length > limits.maxAttachments) throw new TooManyAttachments(String(limits.maxAttachments))
  }

  async function assertMayWrite (conversation: ConversationDoc, senderId: string): Promise<void> {
    if (conversation.type !== 'direct') return
    const other = conversation.memberIds.find((id) => id !== senderId)
    if (other && await readModel.hasBlocked(other, senderId)) throw new Blocked()
  }

  function sameContent (m: MessageDoc, input: SendInput): boolean {
    if (m.deletedAt) return true // nothing left to compare: it is the same send
    return (m.text ?? '') === (input.text ?? '') && m.attachments.map((a) => a.id).join() === (input.attachments ?? []).join()
  }

  /** Sends, or returns the message already sent with this clientMsgId (created: false). */
  async function send (conversationId: string, senderId: string, input: SendInput): Promise<{ message: MessageView, created: boolean }> {
    const conversation = await conversations.getForMember(conversationId, senderId)
    validateContent(input)
    // The block check's round trip overlaps the reads below and the mutex;
    // nothing is written before it has passed (the turn waits for it).
    const mayWrite = assertMayWrite(conversation, senderId)
    mayWrite.catch(() => {})
    const replyTo = input.replyTo === undefined ? undefined : await replyTarget(conversationId, input.replyTo)
    const mentions = await mentionedMembers(conversation, senderId, input.text)
    let attachments: SendFields['attachments'] = []
    if (input.attachments?.length) {
      await mayWrite // claiming them is a write
      attachments = await media.claimAttachments(senderId, input.attachments, conversationId)
    }

    const stored = await storeInTurn(conversationId, {
      senderId,
      clientMsgId: input.clientMsgId,
      text: input.text ?? null,
      attachments,
      ...(replyTo ? { replyTo } : {}),
      ...(mentions.length > 0 ? { mentions } : {})
    }, mayWrite)

    const message = toMessageView(stored.doc)
    if (stored.created) {
      await announce({ type: 'message.created', memberIds: conversation.memberIds, actorId: senderId, message })
      if (stored.doc.mentions?.length) await conversations.mentioned(conversationId, stored.doc.mentions)
    } else if (!sameContent(stored.doc, input)) {
      throw new ClientMsgIdReused()
    }
    // The thread's root learns its new count (also after a resend whose first attempt stopped before this).
    if (stored.doc.replyTo) await threadChanged(conversationId, stored.doc.replyTo.rootSeq, senderId)
    return { message, created: stored.created }
  }

  /**
   * Sends to one conversation take its lock in turns, and each turn stores
   * every send of this instance that queued for the conversation while the
   * lock was awaited (group commit): one read of the conversation, one
   * ordered insert of their messages, one write of the read model, however
   * many there are. A busy conversation then costs a lock hand-over per
   * batch instead of per message. Sends that arrive during a turn wait for
   * the next one, so a busy instance never holds the lock for long.
   */
  const waitingSends = new Map<string, QueuedSend[]>()

  function storeInTurn (conversationId: string, fields: SendFields, mayWrite: Promise<void>): Promise<StoredSend> {
    return new Promise<StoredSend>((resolve, reject) => {
      const queued = waitingSends.get(conversationId)
      if (queued) { queued.push({ fields, mayWrite, resolve, reject }); return }
      const turn: QueuedSend[] = [{ fields, mayWrite, resolve, reject }]
      waitingSends.set(conversationId, turn)
      const close = (): void => { if (waitingSends.get(conversationId) === turn) waitingSends.delete(conversationId) }
      withConversationLock(conversationId, async () => {
        close()
        await storeTurn(conversationId, turn)
      }).catch((err: unknown) => {
        // The lock was not had (so the turn is still open), or the database
        // failed: what was stored is resolved already (a promise settles once).
        close()
        for (const send of turn) send.reject(err)
      })
    })
  }

  /** The sends of a turn whose sender may write; the others are refused (Blocked, or the error that stopped the check). */
  async function allowed (turn: QueuedSend[]): Promise<QueuedSend[]> {
    const refusals = await Promise.all(turn.map((send) => send.mayWrite.then(() => undefined, (err: unknown) => err ?? new Error('refused'))))
    return turn.filter((send, i) => {
      if (refusals[i] === undefined) return true
      send.reject(refusals[i])
      return false
    })
  }

  /** Stores a turn's sends in order, under the conversation's lock. */
  async function storeTurn (conversationId: string, turn: QueuedSend[]): Promise<void> {
    let [now, remaining] = await Promise.all([current(conversationId), allowed(turn)])
    let repairs = 0
    while (remaining.length > 0) {
      const chunk = remaining.slice(0, SEND_BATCH_MAX)
      const createdAt = new Date()
      const docs: MessageDoc[] = chunk.map((send, i) => ({
        _id: messageIdFor(conversationId, now.lastSeq + 1 + i),
        conversationId,
        seq: now.lastSeq + 1 + i,
        changeSeq: now.changeSeq + 1 + i,
        ...send.fields,
        reactions: [],
        createdAt,
        editedAt: null,
        deletedAt: null
      }))
      const inserted = await insertInOrder(docs)
      if (inserted > 0) {
        now = await recordOnConversation(now, docs.slice(0, inserted))
        for (let i = 0; i < inserted; i++) chunk[i]!.resolve({ doc: docs[i]!, created: true })
      }
      remaining = remaining.slice(inserted)
      if (inserted === docs.length) continue
      // The first one not stored hit a unique index: a resend (clientMsgId), or a number already taken.
      const { fields } = remaining[0]!
      const existing = await messages.findOne({ conversationId, senderId: fields.senderId, clientMsgId: fields.clientMsgId })
      if (existing) {
        // Stored, but its sender stopped before recording it on the
        // conversation: finish that now, and announce it.
        const created = existing.seq > now.lastSeq
        if (created) now = await recordOnConversation(now, [existing])
        remaining[0]!.resolve({ doc: existing, created })
        remaining = remaining.slice(1)
        continue
      }
      if (++repairs > 5) throw new Busy()
      await repair(now)
      now = await current(conversationId)
    }
  }

  /**
   * Inserts in order; how many were stored before the first duplicate key
   * (other errors are thrown). Turns of different conversations in flight
   * together share one insert (see group-insert.ts).
   */
  const insertInOrder = createGroupInsert(messages)

  /**
   * The members named by `@username` in the text (never the sender; names of
   * non-members are ordinary text). Profiles come from the read model, and
   * only for a text with an `@` in it.
   */
  async function mentionedMembers (conversation: ConversationDoc, senderId: string, text: string | undefined): Promise<string[]> {
    const names = new Set([...(text ?? '').matchAll(/(?:^|[^A-Za-z0-9_@])@([A-Za-z0-9_]{3,30})(?![A-Za-z0-9_])/g)].map((m) => m[1]!.toLowerCase()))
    if (names.size === 0) return []
    const profiles = await readModel.profiles(conversation.memberIds)
    return conversation.memberIds.filter((id) => id !== senderId && names.has(profiles.get(id)?.username.toLowerCase() ?? ''))
  }

  /** The parent of a reply, as the snapshot the reply keeps. Replies to a reply join the parent's thread. */
  async function replyTarget (conversationId: string, messageId: string): Promise<NonNullable<MessageDoc['replyTo']>> {
    const _id = parseObjectId(messageId)
    const parent = _id ? await messages.findOne({ _id }) : null
    if (!parent || parent.conversationId !== conversationId) throw new ReplyTargetNotFound()
    return {
      id: parent._id.toHexString(),
      seq: parent.seq,
      rootSeq: parent.replyTo?.rootSeq ?? parent.seq,
      senderId: parent.senderId,
      preview: parent.deletedAt ? '' : preview(parent),
      deleted: parent.deletedAt !== null
    }
  }

  /**
   * Recounts a thread onto its root, as a change of the root (a new change
   * number and a message.updated event, so catch-up covers it). Counted, not
   * incremented: a reply whose sender stopped before this is counted by the next one.
   */
  async function threadChanged (conversationId: string, rootSeq: number, actingUserId: string): Promise<void> {
    const rootId = messageIdFor(conversationId, rootSeq).toHexString()
    await change(rootId, actingUserId, () => {}, async () => {
      const filter = threadFilter(conversationId, rootSeq)
      const [replyCount, last] = await Promise.all([
        messages.countDocuments(filter),
        messages.find(filter).sort({ conversationId: 1, 'replyTo.rootSeq': 1, seq: -1 }).limit(1).next()
      ])
      return { $set: { thread: { replyCount, lastReplyAt: last?.createdAt ?? new Date() } } }
    }, 'message.updated')
  }

  // The conversation as it stands after these messages (in seq order):
  // counters never go back; each sender has read what they wrote (see
  // ConversationDoc.lastSentSeq).
  async function recordOnConversation (now: ConversationDoc, docs: MessageDoc[]): Promise<ConversationDoc> {
    const last = docs.at(-1)!
    const lastSentSeq = { ...now.lastSentSeq }
    for (const doc of docs) lastSentSeq[doc.senderId] = Math.max(lastSentSeq[doc.senderId] ?? 0, doc.seq)
    const next: ConversationDoc = {
      ...now,
      lastSeq: Math.max(now.lastSeq, last.seq),
      changeSeq: Math.max(now.changeSeq, last.changeSeq),
      version: (now.version ?? 0) + 1,
      lastActivityAt: last.createdAt,
      updatedAt: last.createdAt,
      lastMessage: last.seq >= now.lastSeq ? lastMessageOf(last) : now.lastMessage,
      lastSentSeq
    }
    await settle(next, true, docs.map(toMessageView))
    return next
  }

  async function loadForMember (messageId: string, userId: string): Promise<{ message: MessageDoc, conversation: ConversationDoc }> {
    const _id = parseObjectId(messageId)
    const message = _id ? await messages.findOne({ _id }) : null
    if (!message) throw new MessageNotFound()
    try {
      return { message, conversation: await conversations.getForMember(message.conversationId, userId) }
    } catch {
      // A message of a conversation you are not in does not exist for you either.
      throw new MessageNotFound()
    }
  }

  /** Applies `update` with the next change number, under the conversation lock, and announces the result. */
  async function change (messageId: string, userId: string, check: (m: MessageDoc) => void, update: (m: MessageDoc) => MessageUpdate | Promise<MessageUpdate>, eventType: 'message.updated' | 'message.deleted' | 'reaction.updated'): Promise<MessageView> {
    const { message, conversation } = await loadForMember(messageId, userId)
    check(message)
    const updated = await withConversationLock(message.conversationId, async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const fresh = await messages.findOne({ _id: message._id })
        if (!fresh) throw new MessageNotFound()
        check(fresh)
        const now = await current(message.conversationId)
        const changeSeq = now.changeSeq + 1
        const operations = await update(fresh)
        let result: MessageDoc | null
        try {
          result = await messages.findOneAndUpdate({ _id: message._id }, { ...operations, $set: { ...operations.$set, changeSeq } }, { returnDocument: 'after' })
        } catch (err) {
          if (!isDuplicateKey(err)) throw err
          await repair(now)
          continue
        }
        if (!result) throw new MessageNotFound()
        // Keep the conversation list's preview true when its last message changes.
        const isLast = now.lastMessage?.seq === result.seq
        const next: ConversationDoc = {
          ...now,
          changeSeq: Math.max(now.changeSeq, changeSeq),
          version: (now.version ?? 0) + 1,
          ...(isLast ? { lastMessage: { ...now.lastMessage!, preview: result.deletedAt ? '' : preview(result), deleted: result.deletedAt !== null } } : {})
        }
        await settle(next, false, [toMessageView(result)])
        return result
      }
      throw new Busy()
    })
    const view = toMessageView(updated)
    await announce({ type: eventType, memberIds: conversation.memberIds, actorId: userId, message: view })
    return view
  }

  const assertSender = (userId: string) => (m: MessageDoc): void => {
    if (m.senderId !== userId) throw new NotSender()
    if (m.deletedAt) throw new MessageDeleted()
  }
  const assertNotDeleted = (m: MessageDoc): void => { if (m.deletedAt) throw new MessageDeleted() }

  function edit (messageId: string, userId: string, text: string): Promise<MessageView> {
    if (text.trim() === '') throw new EmptyMessage()
    if (text.length > limits.maxLength) throw new MessageTooLong(String(limits.maxLength))
    return change(messageId, userId, assertSender(userId), () => ({ $set: { text, editedAt: new Date() } }), 'message.updated')
  }

  async function remove (messageId: string, userId: string): Promise<MessageView> {
    const removed = await change(messageId, userId, assertSender(userId), () => ({ $set: { text: null, attachments: [], reactions: [], deletedAt: new Date() } }), 'message.deleted')
    // Its direct replies quote it: their quote becomes a tombstone (each a change of its own).
    const rootSeq = removed.replyTo?.rootSeq ?? removed.seq
    const replies = await messages.find({ conversationId: removed.conversationId, 'replyTo.rootSeq': rootSeq, 'replyTo.seq': removed.seq }, { projection: { _id: 1 } }).toArray()
    for (const reply of replies) {
      await change(reply._id.toHexString(), userId, () => {}, () => ({ $set: { 'replyTo.preview': '', 'replyTo.deleted': true } }), 'message.updated')
    }
    return removed
  }

  /**
   * A thread: its root and a page of its replies by seq (after `after`,
   * ascending), with the caller's read position in it and how many replies
   * from others they have not read.
   */
  async function thread (conversationId: string, userId: string, rootSeq: number, opts: { after?: number, limit: number }): Promise<{ root: MessageView, replies: MessageView[], hasMore: boolean, lastReadSeq: number, unreadCount: number }> {
    const { root } = await threadOf(conversationId, userId, rootSeq)
    const [docs, lastReadSeq] = await Promise.all([
      messages.find({ ...threadFilter(conversationId, rootSeq), seq: { $gt: opts.after ?? 0 } }).sort({ conversationId: 1, 'replyTo.rootSeq': 1, seq: 1 }).limit(opts.limit + 1).toArray(),
      conversations.threadReadSeq(conversationId, userId, rootSeq)
    ])
    const unreadCount = await unreadReplies(conversationId, rootSeq, userId, lastReadSeq)
    return { root: toMessageView(root), replies: docs.slice(0, opts.limit).map(toMessageView), hasMore: docs.length > opts.limit, lastReadSeq, unreadCount }
  }

  /** The caller has read the thread up to `seq`. */
  async function markThreadRead (conversationId: string, userId: string, rootSeq: number, seq: number): Promise<{ lastReadSeq: number, unreadCount: number }> {
    const { conversation } = await threadOf(conversationId, userId, rootSeq)
    const lastReadSeq = await conversations.markThreadRead(conversation, userId, rootSeq, seq)
    return { lastReadSeq, unreadCount: await unreadReplies(conversationId, rootSeq, userId, lastReadSeq) }
  }

  const threadFilter = (conversationId: string, rootSeq: number) => ({ conversationId, 'replyTo.rootSeq': rootSeq })

  /** The conversation (you must be a member) and the first message of one of its threads. */
  async function threadOf (conversationId: string, userId: string, rootSeq: number): Promise<{ conversation: ConversationDoc, root: MessageDoc }> {
    const conversation = await conversations.getForMember(conversationId, userId)
    const root = await messages.findOne({ _id: messageIdFor(conversationId, rootSeq) })
    if (!root || root.conversationId !== conversationId || root.replyTo) throw new ThreadNotFound()
    return { conversation, root }
  }

  /** Replies from others after the reader's position in the thread. */
  function unreadReplies (conversationId: string, rootSeq: number, userId: string, lastReadSeq: number): Promise<number> {
    return messages.countDocuments({ ...threadFilter(conversationId, rootSeq), seq: { $gt: lastReadSeq }, senderId: { $ne: userId } })
  }

  function react (messageId: string, userId: string, emoji: string, on: boolean): Promise<MessageView> {
    return change(messageId, userId, (m) => {
      assertNotDeleted(m)
      if (on && m.reactions.length >= MAX_REACTIONS_PER_MESSAGE && !m.reactions.some((r) => r.emoji === emoji && r.userId === userId)) throw new TooManyReactions()
    }, () => on ? { $addToSet: { reactions: { emoji, userId } } } : { $pull: { reactions: { emoji, userId } } }, 'reaction.updated')
  }

  /**
   * A page of messages by seq: the latest by default, or before / after a seq.
   * Ascending. Seqs have no gaps, so the page's range is known up front.
   */
  async function history (conversationId: string, userId: string, opts: { before?: number, after?: number, limit: number }): Promise<{ messages: MessageView[], hasMore: boolean }> {
    const conversation = await conversations.getForMember(conversationId, userId)
    const { limit } = opts
    const ceiling = Math.min(opts.before ?? conversation.lastSeq + 1, conversation.lastSeq + 1) - 1
    let from: number
    let to: number
    let hasMore: boolean
    if (opts.after !== undefined) {
      from = opts.after + 1
      to = Math.min(ceiling, opts.after + limit)
      hasMore = to < ceiling
    } else {
      to = ceiling
      from = Math.max(1, to - limit + 1)
      hasMore = from > 1
    }
    if (to < from) return { messages: [], hasMore: false }
    // The latest messages come from the read model's window; older ones are one indexed range query.
    // Every message change also changes the conversation, so a page computed from this very conversation object still holds.
    return readModel.keptHistoryPage(`${conversationId}:${from}:${to}`, [conversation, hasMore], async () =>
      ({ messages: await readModel.messageRange(conversationId, conversation.lastSeq, from, to), hasMore }))
  }

  /**
   * Everything that changed after change number `since`, oldest first: new
   * messages, edits, deletions (tombstones) and reactions, each as its current
   * state. Applying the pages in order, keyed by seq, gives exactly the server's state.
   */
  async function changes (conversationId: string, userId: string, since: number, limit: number, maxBytes = PAGE_MAX_BYTES): Promise<ChangesPage> {
    const conversation = await conversations.getForMember(conversationId, userId)
    const docs = await messages.find({ conversationId, changeSeq: { $gt: since } }).sort({ changeSeq: 1 }).limit(limit + 1).toArray()
    // Bounded in bytes as well as in count: a page of the longest messages
    // stops early (never empty) and says hasMore.
    const page: MessageView[] = []
    let bytes = 0
    for (const doc of docs.slice(0, limit)) {
      const view = toMessageView(doc)
      const size = Buffer.byteLength(JSON.stringify(view))
      if (page.length > 0 && bytes + size > maxBytes) break
      page.push(view)
      bytes += size
    }
    return { changes: page, cursor: page.at(-1)?.changeSeq ?? since, hasMore: docs.length > page.length, lastSeq: conversation.lastSeq, bytes }
  }

  /** Case-insensitive substring search in the caller's conversations; the query is escaped, never a pattern. */
  async function search (userId: string, query: string, limit: number, conversationId?: string): Promise<MessageView[]> {
    const ids = conversationId ? [(await conversations.getForMember(conversationId, userId))._id.toHexString()] : await conversations.memberConversationIds(userId, 1000)
    if (ids.length === 0) return []
    const docs = await messages.find({ conversationId: { $in: ids }, deletedAt: null, text: { $regex: escapeStringRegexp(query), $options: 'i' } })
      .sort({ createdAt: -1 }).limit(limit).toArray()
    return docs.map(toMessageView)
  }

  return { collection: messages, send, edit, remove, react, history, changes, search, thread, markThreadRead }
}
