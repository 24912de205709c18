// Outgoing webhooks: a conversation's stored message events POSTed as JSON to
// URLs its admins chose. Each delivery is signed (HMAC-SHA256 over
// `${timestamp}.${body}` with the webhook's secret), carries an event id that
// stays the same on every retry, and is retried with exponential back-off by
// BullMQ (services/deliveries.ts). A webhook whose events keep failing through
// every attempt is disabled. Targets are checked against private addresses
// when set and again on every connection (services/outbound.ts); redirects
// are not followed.
import { createHmac } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { ObjectId, type Collection, type Db } from 'mongodb'
import createError from '@fastify/error'
import type { Static } from '@sinclair/typebox'
import type { RedisClient } from './redis-client.js'
import { randomToken } from './crypto.js'
import { parseObjectId } from './users.js'
import type { Outbound } from './outbound.js'
import type { DeliveryTargets } from './delivery-targets.js'
import { WEBHOOK_EVENTS, type CreateWebhookBody, type WebhookDelivery, type WebhookEvent, type WebhookPatch, type WebhookView } from '../schemas/integrations.js'

export const WebhookNotFound = createError('WEBHOOK_NOT_FOUND', 'No such webhook', 404)
export const TooManyWebhooks = createError('TOO_MANY_WEBHOOKS', 'A conversation has at most %s webhooks', 409)

export const MAX_WEBHOOKS_PER_CONVERSATION = 10
const LOG_LENGTH = 100
const LOG_TTL_S = 30 * 24 * 3600

export type WebhookEventType = typeof WEBHOOK_EVENTS[number]
export type WebhookEventBody = Static<typeof WebhookEvent>
export type DeliveryRecord = Static<typeof WebhookDelivery>

export interface WebhookDoc {
  _id: ObjectId
  conversationId: string
  url: string
  events: WebhookEventType[]
  secret: string
  enabled: boolean
  disabledReason: string | null
  failedEventsInARow: number
  createdBy: string
  createdAt: Date
}

export interface WebhookJob { webhookId: string, event: WebhookEventBody }

/** The signature header value a receiver recomputes: `v1=` + hex HMAC-SHA256(secret, `${timestamp}.${body}`). */
export const webhookSignature = (secret: string, timestamp: string, body: string): string =>
  `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`

export type WebhookService = ReturnType<typeof createWebhookService>

export function createWebhookService (deps: {
  db: Db
  redis: RedisClient
  outbound: Outbound
  timeoutMs: number
  disableAfter: number
  /** The conversations' enabled webhooks, cached; told of every change of them. */
  targets: DeliveryTargets
  onAttempt?: (ok: boolean) => void
}) {
  const { db, redis, outbound, timeoutMs, disableAfter, targets: cachedTargets } = deps
  const webhooks: Collection<WebhookDoc> = db.collection<WebhookDoc>('webhooks')
  const logKey = (webhookId: string): string => `webhook:log:${webhookId}`

  const toView = (doc: WebhookDoc): Static<typeof WebhookView> => ({
    id: doc._id.toHexString(),
    conversationId: doc.conversationId,
    url: doc.url,
    events: doc.events,
    enabled: doc.enabled,
    disabledReason: doc.disabledReason,
    failedEventsInARow: doc.failedEventsInARow,
    createdBy: doc.createdBy,
    createdAt: doc.createdAt.toISOString()
  })

  async function create (conversationId: string, userId: string, input: Static<typeof CreateWebhookBody>): Promise<{ webhook: Static<typeof WebhookView>, secret: string }> {
    const url = await outbound.checkUrl(input.url)
    if (await webhooks.countDocuments({ conversationId }, { limit: MAX_WEBHOOKS_PER_CONVERSATION }) >= MAX_WEBHOOKS_PER_CONVERSATION) {
      throw new TooManyWebhooks(String(MAX_WEBHOOKS_PER_CONVERSATION))
    }
    const doc: WebhookDoc = {
      _id: new ObjectId(),
      conversationId,
      url: url.href,
      events: input.events ?? [...WEBHOOK_EVENTS],
      secret: `whsec_${randomToken(32)}`,
      enabled: true,
      disabledReason: null,
      failedEventsInARow: 0,
      createdBy: userId,
      createdAt: new Date()
    }
    await webhooks.insertOne(doc)
    await cachedTargets.webhooksChanged(conversationId)
    return { webhook: toView(doc), secret: doc.secret }
  }

  async function find (conversationId: string, webhookId: string): Promise<WebhookDoc> {
    const _id = parseObjectId(webhookId)
    const doc = _id ? await webhooks.findOne({ _id, conversationId }) : null
    if (!doc) throw new WebhookNotFound()
    return doc
  }

  async function list (conversationId: string): Promise<Array<Static<typeof WebhookView>>> {
    return (await webhooks.find({ conversationId }).sort({ conversationId: 1, createdAt: 1 }).toArray()).map(toView)
  }

  async function update (conversationId: string, webhookId: string, patch: Static<typeof WebhookPatch>): Promise<Static<typeof WebhookView>> {
    const doc = await find(conversationId, webhookId)
    const set: Partial<WebhookDoc> = {}
    if (patch.events) set.events = patch.events
    if (patch.enabled === true) Object.assign(set, { enabled: true, disabledReason: null, failedEventsInARow: 0 })
    if (patch.enabled === false) Object.assign(set, { enabled: false, disabledReason: 'disabled by an admin' })
    const updated = await webhooks.findOneAndUpdate({ _id: doc._id }, { $set: set }, { returnDocument: 'after' })
    if (!updated) throw new WebhookNotFound()
    await cachedTargets.webhooksChanged(conversationId)
    return toView(updated)
  }

  async function remove (conversationId: string, webhookId: string): Promise<void> {
    const doc = await find(conversationId, webhookId)
    await Promise.all([webhooks.deleteOne({ _id: doc._id }), redis.del(logKey(webhookId))])
    await cachedTargets.webhooksChanged(conversationId)
  }

  async function deliveries (conversationId: string, webhookId: string): Promise<DeliveryRecord[]> {
    await find(conversationId, webhookId)
    return (await redis.lrange(logKey(webhookId), 0, LOG_LENGTH - 1)).map((line) => JSON.parse(line) as DeliveryRecord)
  }

  /** The enabled webhooks of the conversation that take this event. */
  async function targets (conversationId: string, type: WebhookEventType): Promise<string[]> {
    return (await cachedTargets.webhooksOf(conversationId)).filter((w) => w.events.includes(type)).map((w) => w.id)
  }

  function post (url: string, body: string, headers: Record<string, string>): Promise<number> {
    return new Promise((resolve, reject) => {
      const request = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, {
        method: 'POST',
        agent: outbound.agentFor(url),
        timeout: timeoutMs,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'Parley-Webhooks/1' }
      }, (response) => {
        response.resume() // the body is not needed; reading it frees the socket
        response.on('end', () => resolve(response.statusCode ?? 0))
        response.on('error', reject)
      })
      request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)))
      request.on('error', reject)
      request.end(body)
    })
  }

  /**
   * One attempt. Resolves when the target answered 2xx; throws otherwise, so
   * that BullMQ retries. On the last attempt a failure counts against the
   * webhook, and enough of them in a row disable it.
   */
  async function deliver (job: WebhookJob, attempt: number, lastAttempt: boolean): Promise<void> {
    const _id = parseObjectId(job.webhookId)
    const hook = _id ? await webhooks.findOne({ _id }) : null
    if (!hook?.enabled) return // removed or disabled since: nothing to do
    const body = JSON.stringify(job.event)
    const timestamp = String(Math.floor(Date.now() / 1000))
    const started = performance.now()
    let status: number | null = null
    let error: string | null = null
    try {
      status = await post(hook.url, body, {
        'x-parley-event': job.event.type,
        'x-parley-event-id': job.event.id,
        'x-parley-timestamp': timestamp,
        'x-parley-signature': webhookSignature(hook.secret, timestamp, body)
      })
      if (status >= 300 && status < 400) error = 'redirects are not followed'
      else if (status < 200 || status >= 300) error = `answered ${status}`
    } catch (err) {
      error = (err as Error).message.slice(0, 200)
    }
    deps.onAttempt?.(error === null)
    const record: DeliveryRecord = { eventId: job.event.id, type: job.event.type, attempt, ok: error === null, status, error, durationMs: Math.round(performance.now() - started), at: new Date().toISOString() }
    await Promise.all([
      redis.lpush(logKey(job.webhookId), JSON.stringify(record)).then(() => redis.ltrim(logKey(job.webhookId), 0, LOG_LENGTH - 1)),
      redis.expire(logKey(job.webhookId), LOG_TTL_S)
    ])
    if (error === null) {
      if (hook.failedEventsInARow > 0) await webhooks.updateOne({ _id: hook._id }, { $set: { failedEventsInARow: 0 } })
      return
    }
    if (lastAttempt) {
      const after = await webhooks.findOneAndUpdate({ _id: hook._id }, { $inc: { failedEventsInARow: 1 } }, { returnDocument: 'after' })
      if (after && after.enabled && after.failedEventsInARow >= disableAfter) {
        await webhooks.updateOne({ _id: hook._id }, { $set: { enabled: false, disabledReason: `${after.failedEventsInARow} events in a row failed every attempt; the last: ${error}` } })
        await cachedTargets.webhooksChanged(hook.conversationId)
      }
    }
    throw new Error(`webhook delivery failed: ${error}`)
  }

  return { create, list, update, remove, deliveries, targets, deliver, collection: webhooks }
}
