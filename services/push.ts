// Web Push to devices of users who have no open socket. A new message is
// stored → the event worker (services/event-jobs.ts) asks `plan` which members
// to notify → one delayed job per (user, conversation) → `deliver` builds the
// notification from what the database holds when it runs and sends it to each
// of the user's devices, encrypted for that device (RFC 8291, aes128gcm) and
// signed with the server's VAPID key (RFC 8292), by the web-push library.
//
// Bursts collapse twice: the job id is per user and conversation, so messages
// arriving while it waits join it; and the Topic header lets the push service
// replace a notification the device has not fetched yet.
import { createHash } from 'node:crypto'
import { ObjectId, type Collection, type Db } from 'mongodb'
import createError from '@fastify/error'
import webpush from 'web-push'
import type { Static } from '@sinclair/typebox'
import type { RedisClient } from './redis-client.js'
import { hasOpenSocket } from './presence.js'
import { parseObjectId, type UserDoc } from './users.js'
import type { ConversationDoc, MembershipDoc } from './conversations.js'
import type { MessageDoc } from './messages.js'
import type { Outbound } from './outbound.js'
import type { DeliveryTargets } from './delivery-targets.js'
import type { PushPayload, PushSubscriptionBody, PushSubscriptionView } from '../schemas/integrations.js'

export const SubscriptionNotFound = createError('PUSH_SUBSCRIPTION_NOT_FOUND', 'No such push subscription', 404)
export const InvalidSubscriptionKeys = createError('INVALID_PUSH_KEYS', 'keys.p256dh must be a P-256 public key (65 bytes) and keys.auth 16 bytes', 400)

/** Devices per user; subscribing one more replaces the least recently created. */
export const MAX_SUBSCRIPTIONS_PER_USER = 20
const PREVIEW_CHARS = 200
const PUSH_TTL_S = 24 * 3600

export interface PushSubscriptionDoc {
  _id: ObjectId
  userId: string
  endpoint: string
  keys: { p256dh: string, auth: string }
  expirationTime: number | null
  createdAt: Date
  lastPushAt: Date | null
}

export interface VapidKeys { publicKey: string, privateKey: string, subject: string }
export interface PushJob { userId: string, conversationId: string, sent?: string[] }
export type PushOutcome = 'sent' | 'online' | 'read' | 'muted' | 'no-devices' | 'gone'

export type PushService = ReturnType<typeof createPushService>

/**
 * The configured VAPID key pair, or (outside production, where config demands
 * one) a generated pair shared through Redis: every instance and worker must
 * sign with the key devices subscribed with.
 */
export async function resolveVapidKeys (redis: RedisClient, config: { VAPID_PUBLIC_KEY?: string | undefined, VAPID_PRIVATE_KEY?: string | undefined, VAPID_SUBJECT: string }): Promise<VapidKeys> {
  if (config.VAPID_PUBLIC_KEY !== undefined && config.VAPID_PRIVATE_KEY !== undefined) {
    return { publicKey: config.VAPID_PUBLIC_KEY, privateKey: config.VAPID_PRIVATE_KEY, subject: config.VAPID_SUBJECT }
  }
  const mine = JSON.stringify(webpush.generateVAPIDKeys())
  const shared = await redis.set('secrets:vapid', mine, 'NX', 'GET') ?? mine
  const { publicKey, privateKey } = JSON.parse(shared) as { publicKey: string, privateKey: string }
  return { publicKey, privateKey, subject: config.VAPID_SUBJECT }
}

export function createPushService (deps: {
  db: Db
  redis: RedisClient
  vapid: VapidKeys
  outbound: Outbound
  timeoutMs: number
  /** Who has devices, cached; told of every change of a user's devices. */
  targets: DeliveryTargets
  onPush?: (result: 'sent' | 'gone' | 'failed') => void
}) {
  const { db, redis, vapid, outbound, timeoutMs, targets } = deps
  const subscriptions: Collection<PushSubscriptionDoc> = db.collection<PushSubscriptionDoc>('push_subscriptions')
  const conversations = db.collection<ConversationDoc>('conversations')
  const memberships = db.collection<MembershipDoc>('memberships')
  const messages = db.collection<MessageDoc>('messages')
  const users = db.collection<UserDoc>('users')
  const blocks = db.collection<{ _id: string }>('blocks')

  function toView (doc: PushSubscriptionDoc): Static<typeof PushSubscriptionView> {
    return { id: doc._id.toHexString(), endpointOrigin: new URL(doc.endpoint).origin, createdAt: doc.createdAt.toISOString(), lastPushAt: doc.lastPushAt?.toISOString() ?? null }
  }

  /**
   * Registers a device. The endpoint identifies the device: registering it
   * again (a new sign-in, rotated keys) moves it to this user with these keys.
   */
  async function subscribe (userId: string, input: Static<typeof PushSubscriptionBody>): Promise<Static<typeof PushSubscriptionView>> {
    if (Buffer.from(input.keys.p256dh, 'base64url').length !== 65 || Buffer.from(input.keys.p256dh, 'base64url')[0] !== 4 || Buffer.from(input.keys.auth, 'base64url').length !== 16) {
      throw new InvalidSubscriptionKeys()
    }
    await outbound.checkUrl(input.endpoint, { httpsOnly: true })
    const fields = { userId, keys: input.keys, expirationTime: input.expirationTime ?? null, createdAt: new Date(), lastPushAt: null }
    const insertedId = new ObjectId()
    const before = await subscriptions.findOneAndUpdate({ endpoint: input.endpoint }, {
      $set: fields,
      $setOnInsert: { _id: insertedId, endpoint: input.endpoint }
    }, { upsert: true, returnDocument: 'before' })
    const mine = await subscriptions.find({ userId }, { projection: { _id: 1 } }).sort({ userId: 1, createdAt: -1 }).skip(MAX_SUBSCRIPTIONS_PER_USER).toArray()
    if (mine.length > 0) await subscriptions.deleteMany({ _id: { $in: mine.map((s) => s._id) } })
    // The device may have belonged to someone else until now.
    await targets.devicesChanged(before && before.userId !== userId ? [userId, before.userId] : [userId])
    return toView({ _id: before?._id ?? insertedId, endpoint: input.endpoint, ...fields })
  }

  async function list (userId: string): Promise<Array<Static<typeof PushSubscriptionView>>> {
    return (await subscriptions.find({ userId }).sort({ userId: 1, createdAt: -1 }).toArray()).map(toView)
  }

  async function unsubscribe (userId: string, id: string): Promise<void> {
    const _id = parseObjectId(id)
    const { deletedCount } = _id ? await subscriptions.deleteOne({ _id, userId }) : { deletedCount: 0 }
    if (deletedCount === 0) throw new SubscriptionNotFound()
    await targets.devicesChanged([userId])
  }

  /** Every device of the user (sign-out everywhere, account erasure). */
  async function removeAll (userId: string): Promise<void> {
    await subscriptions.deleteMany({ userId })
    await targets.devicesChanged([userId])
  }

  /**
   * A message was stored: schedule a push for every other member who has a
   * device and no open socket. Mute, read state and blocks are decided when
   * the job runs, on the state of that moment. `schedule` adds the delayed
   * (user, conversation) job; a job already waiting under that id absorbs it.
   */
  async function plan (conversationId: string, memberIds: string[], senderId: string, schedule: (job: PushJob, jobId: string) => Promise<void>): Promise<number> {
    const others = memberIds.filter((id) => id !== senderId)
    if (others.length === 0) return 0
    const withDevices = await targets.withDevices(others)
    const offline = (await Promise.all([...withDevices].map(async (userId) => await hasOpenSocket(redis, userId) ? null : userId))).filter((id) => id !== null)
    await Promise.all(offline.map((userId) => schedule({ userId, conversationId }, `push-${userId}-${conversationId}`)))
    return offline.length
  }

  /** What to tell the user about this conversation now, or why nothing. */
  async function notification (userId: string, conversationId: string): Promise<Static<typeof PushPayload> | Exclude<PushOutcome, 'sent' | 'no-devices' | 'gone'>> {
    const _id = parseObjectId(conversationId)
    // The document's counters are written behind the sends (services/conversation-activity.ts): the last message says where they are.
    const [conversation, membership, latest] = await Promise.all([
      _id ? conversations.findOne({ _id }) : null,
      memberships.findOne({ _id: `${conversationId}:${userId}` }),
      messages.find({ conversationId }).sort({ conversationId: 1, seq: -1 }).limit(1).next()
    ])
    if (!conversation?.memberIds.includes(userId) || !membership || !latest) return 'read'
    const lastSeq = Math.max(conversation.lastSeq, latest.seq)
    const lastRead = Math.max(membership.lastReadSeq, conversation.lastSentSeq?.[userId] ?? 0, latest.senderId === userId ? latest.seq : 0)
    const unreadCount = lastSeq - lastRead
    if (unreadCount <= 0) return 'read'
    // A mention reaches you through a mute: then the notification is about the mention.
    const muted = membership.mutedUntil !== null && membership.mutedUntil > new Date()
    if (muted && (membership.mentionCount ?? 0) === 0) return 'muted'
    const shown = muted
      ? await messages.find({ conversationId, mentions: userId, seq: { $gt: lastRead } }).sort({ conversationId: 1, mentions: 1, seq: -1 }).limit(1).next()
      : latest
    if (!shown || shown.deletedAt) return muted ? 'muted' : 'read'
    const senderId = parseObjectId(shown.senderId)
    const [sender, blocked] = await Promise.all([
      senderId ? users.findOne({ _id: senderId }, { projection: { displayName: 1 } }) : null,
      blocks.countDocuments({ _id: `${userId}:${shown.senderId}` }, { limit: 1 })
    ])
    const text = shown.text ?? (shown.attachments.length > 0 ? '[image]' : '')
    return {
      type: 'message',
      conversationId,
      seq: shown.seq,
      title: conversation.type === 'group' ? (conversation.title ?? 'Group') : (sender?.displayName ?? 'Deleted user'),
      // Nothing a blocked user wrote leaves the server towards you.
      body: blocked > 0 ? null : text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text,
      unreadCount,
      mention: shown.mentions?.includes(userId) ?? false
    }
  }

  /**
   * The job: sends the notification to each device not yet done. A device the
   * push service says is gone (404, 410) is forgotten; any other failure
   * throws, and the retry skips the devices already sent to (`job.sent`).
   */
  async function deliver (job: PushJob, markSent: (subscriptionId: string) => Promise<void>): Promise<PushOutcome> {
    if (await hasOpenSocket(redis, job.userId)) return 'online'
    const payload = await notification(job.userId, job.conversationId)
    if (typeof payload === 'string') return payload
    const devices = (await subscriptions.find({ userId: job.userId }).toArray()).filter((d) => !job.sent?.includes(d._id.toHexString()))
    if (devices.length === 0) return 'no-devices'
    const body = JSON.stringify(payload)
    // Topic: at most 32 URL-safe characters; one per user and conversation.
    const topic = createHash('sha256').update(`${job.userId}:${job.conversationId}`).digest('base64url').slice(0, 32)
    let failure: unknown
    let gone = 0
    for (const device of devices) {
      try {
        await webpush.sendNotification({ endpoint: device.endpoint, keys: device.keys }, body, {
          vapidDetails: vapid,
          TTL: PUSH_TTL_S,
          urgency: payload.mention ? 'high' : 'normal',
          topic,
          timeout: timeoutMs,
          agent: outbound.httpsAgent
        })
        deps.onPush?.('sent')
        await Promise.all([subscriptions.updateOne({ _id: device._id }, { $set: { lastPushAt: new Date() } }), markSent(device._id.toHexString())])
      } catch (err) {
        if (err instanceof webpush.WebPushError && (err.statusCode === 404 || err.statusCode === 410)) {
          deps.onPush?.('gone')
          gone++
          await subscriptions.deleteOne({ _id: device._id })
          await targets.devicesChanged([device.userId])
          continue
        }
        deps.onPush?.('failed')
        failure = err
      }
    }
    if (failure !== undefined) throw failure
    return gone === devices.length ? 'gone' : 'sent'
  }

  return { subscribe, list, unsubscribe, removeAll, plan, deliver, publicKey: vapid.publicKey, collection: subscriptions }
}
