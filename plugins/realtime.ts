// The WebSocket gateway's engine: the sockets of this instance, delivery of
// events from the shared Redis channel, presence heartbeats, frame handling.
// The /ws route itself (handshake) is in routes/ws.
import fp from 'fastify-plugin'
import { Cluster } from 'ioredis'
import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger, FastifyError } from 'fastify'
import type { WebSocket } from 'ws'
import { Ajv, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import createError from '@fastify/error'
import { CLOSE, RequestEnvelope, requestData, type AckData, type RequestData, type RequestType } from '../schemas/ws.js'
import type { RealtimeEvent } from '../services/events.js'
import type { ChangesPage } from '../services/messages.js'
import { createPresenceService, type PresenceService } from '../services/presence.js'
import type { EventEnvelope } from './events.js'

declare module 'fastify' {
  interface FastifyInstance {
    presence: PresenceService
    realtime: {
      /** Takes over an authenticated, upgraded socket. */
      accept: (socket: WebSocket, user: { id: string, sessionId: string }, options?: { holdUntilSync?: boolean }) => Promise<void>
      /** Open sockets on this instance. */
      connectionCount: () => number
      /** Sockets this instance has cut off, by reason. */
      stats: () => { slowConsumers: number, rateLimited: number, deadPeers: number, eventsReceived: number, eventsDelivered: number, subscribedUsers: number }
    }
  }
}

const BadFrame = createError('BAD_FRAME', '%s', 400)
const UnknownType = createError('UNKNOWN_TYPE', 'Unknown request type "%s"', 400)
const FrameInvalid = createError('VALIDATION_ERROR', '%s', 400)
const RateLimited = createError('RATE_LIMITED', 'Too many frames; slow down', 429)

const MESSAGE_EVENTS = new Set(['message.created', 'message.updated', 'message.deleted', 'reaction.updated'])
const MAX_SYNC_BUFFER = 2000
/** What one sync ack may carry at most, over all its conversations. */
export const SYNC_MAX_CHANGES = 1000
export const SYNC_MAX_BYTES = 1024 * 1024
const DELIVERED_MEMORY = 1000
const HOLD_UNTIL_SYNC_MS = 10_000
// How long a socket that is being cut off waits for its answers at most.
const CUT_OFF_WAIT_MS = 10_000

interface Client {
  id: string
  userId: string
  sessionId: string
  socket: WebSocket
  alive: boolean
  tokens: number
  refilledAt: number
  strikes: number
  typingAt: Map<string, number>
  /** Requests being carried out; a socket is closed only after they are answered. */
  pending: Set<Promise<void>>
  /** Refused further frames; closed once `pending` is answered. */
  cutOff: boolean
  /** Conversations being caught up: live message events wait here until the catch-up is sent. */
  syncing: Map<string, RealtimeEvent[]>
  /** changeSeqs already sent live, per conversation, so a catch-up does not repeat them. */
  delivered: Map<string, Set<number>>
  /**
   * A resuming client (?resume=1) gets no message events until its first sync:
   * they wait here, so that the catch-up comes first and nothing arrives twice.
   */
  held: RealtimeEvent[] | null
  heldOverflow: boolean
  /**
   * Per conversation, the change number a catch-up brought the client to. An
   * event for a change at or below it can still arrive afterwards (published
   * after the catch-up read it) and is dropped: the client has that state.
   */
  caughtUpTo: Map<string, number>
}

// Frames are validated by Ajv with the options HTTP bodies get, so a value is
// accepted or refused the same way over both (Unicode patterns included).
const ajv = new Ajv({ removeAdditional: false, useDefaults: true, coerceTypes: false, allErrors: false })
addFormats.default(ajv)
const envelopeCheck = ajv.compile<{ type: string, ref?: string, data?: unknown }>(RequestEnvelope)
const dataChecks = Object.fromEntries(Object.entries(requestData).map(([type, schema]) => [type, ajv.compile(schema)])) as Record<RequestType, ValidateFunction>

function changeOf (event: RealtimeEvent): { conversationId: string, changeSeq: number } | undefined {
  if (!MESSAGE_EVENTS.has(event.type)) return undefined
  const message = event.data.message as { conversationId: string, changeSeq: number } | undefined
  return message ? { conversationId: message.conversationId, changeSeq: message.changeSeq } : undefined
}

export default fp(async (fastify) => {
  const { config, metrics } = fastify
  const log: FastifyBaseLogger = fastify.log.child({ component: 'realtime' })
  const clients = new Map<string, Set<Client>>()
  let count = 0
  // eventsReceived: from Redis; eventsDelivered: handed to a local socket's user. Targeted fan-out keeps them ≈ equal.
  const stats = { slowConsumers: 0, rateLimited: 0, deadPeers: 0, eventsReceived: 0, eventsDelivered: 0 }

  const presence = createPresenceService({
    redis: fastify.redis,
    users: fastify.users,
    publish: fastify.publish,
    contacts: fastify.conversations.contacts,
    profilesOf: fastify.readModel.profiles,
    onProfileChanged: (user) => fastify.readModel.putProfiles([user]),
    ttlS: config.PRESENCE_TTL_S,
    graceMs: config.PRESENCE_GRACE_MS
  })
  fastify.decorate('presence', presence)
  // "Last seen" is the last sign of life, socket or HTTP: see touch().
  fastify.addHook('onResponse', async (request) => {
    const userId = (request.user as { id?: unknown } | null | undefined)?.id
    if (typeof userId === 'string') presence.touch(userId).catch((err) => request.log.debug({ err }, 'last seen not recorded'))
  })

  function send (client: Client, frame: unknown): void {
    sendText(client, JSON.stringify(frame))
  }

  // One event goes to every local socket of each of its members: it is
  // serialised once (the frame is the event itself: type and data).
  const frames = new WeakMap<RealtimeEvent, string>()
  function sendEvent (client: Client, event: RealtimeEvent): void {
    let text = frames.get(event)
    if (text === undefined) frames.set(event, text = JSON.stringify({ type: event.type, data: event.data }))
    sendText(client, text)
  }

  function sendText (client: Client, text: string): void {
    const { socket } = client
    if (socket.readyState !== socket.OPEN) return
    // A consumer that cannot keep up is cut off rather than buffered for without limit.
    if (socket.bufferedAmount > config.WS_MAX_BUFFERED_BYTES) {
      log.warn({ userId: client.userId, buffered: socket.bufferedAmount }, 'slow consumer closed')
      stats.slowConsumers++
      socket.close(CLOSE.overloaded, 'slow consumer')
      // It is not reading, so it may never read the close frame either.
      setTimeout(() => socket.terminate(), 1000).unref()
      return
    }
    socket.send(text)
    metrics.wsFrames.inc({ direction: 'out' })
  }

  function remember (client: Client, conversationId: string, changeSeq: number): void {
    let seen = client.delivered.get(conversationId)
    if (!seen) client.delivered.set(conversationId, seen = new Set())
    seen.add(changeSeq)
    if (seen.size > DELIVERED_MEMORY) seen.delete(seen.values().next().value!)
  }

  function deliverEvent (client: Client, event: RealtimeEvent): void {
    const change = changeOf(event)
    if (change && client.held) {
      if (client.held.length < MAX_SYNC_BUFFER) client.held.push(event)
      else client.heldOverflow = true
      return
    }
    if (change) {
      const waiting = client.syncing.get(change.conversationId)
      if (waiting) {
        if (waiting.length < MAX_SYNC_BUFFER) waiting.push(event)
        return
      }
      if (change.changeSeq <= (client.caughtUpTo.get(change.conversationId) ?? 0)) return
      remember(client, change.conversationId, change.changeSeq)
    }
    sendEvent(client, event)
  }

  function deliver (userId: string, event: RealtimeEvent): void {
    const local = clients.get(userId)
    if (!local) return
    stats.eventsDelivered++
    metrics.eventsDelivered.inc()
    for (const client of local) {
      if (event.type === 'session.revoked') {
        const ended = event.data.sessionIds as string[]
        if (!ended.includes(client.sessionId)) continue
        send(client, { type: 'session.revoked', data: event.data })
        client.socket.close(CLOSE.sessionEnded, 'session ended')
        continue
      }
      deliverEvent(client, event)
    }
  }

  // This instance subscribes to the channel of each user it holds a socket of,
  // from their first socket here to their last (see plugins/events.ts).
  const subscriber = fastify.redisConnection('events-subscriber', { maxRetriesPerRequest: null })
  const subscriptions = new Map<string, Promise<unknown>>()
  let interrupted = false
  // An event is published once per member; those of one event arrive here
  // one after another, and are parsed once (and so serialised once, above).
  let lastRaw = ''
  let lastEnvelope: EventEnvelope | undefined
  subscriber.on('smessage', (channel: string, raw: string) => {
    stats.eventsReceived++
    metrics.eventsReceived.inc()
    const userId = fastify.channelUser(channel)
    if (userId === undefined) return
    try {
      const envelope = raw === lastRaw && lastEnvelope ? lastEnvelope : JSON.parse(raw) as EventEnvelope
      lastRaw = raw
      lastEnvelope = envelope
      metrics.fanOutLag.observe(Math.max(0, Date.now() - envelope.at) / 1000)
      deliver(userId, envelope.event)
    } catch (err) {
      log.error({ err }, 'undeliverable event')
    }
  })
  // ioredis resubscribes by itself after a reconnect (on a cluster: after a
  // shard's subscriber connection is replaced, as in a failover); events
  // published in between are gone, so every client is told to catch up.
  const restored = (): void => {
    if (!interrupted) return
    interrupted = false
    log.warn('events channels restored; asking clients to catch up')
    for (const local of clients.values()) for (const client of local) send(client, { type: 'resync', data: { reason: 'events-interrupted' } })
  }
  if (subscriber instanceof Cluster) {
    subscriber.on('-node', () => { interrupted = true })
    subscriber.on('subscribersReady', restored)
  } else {
    subscriber.on('close', () => { interrupted = true })
    subscriber.on('ready', restored)
  }
  await subscriber.ping()

  fastify.onSessionsRevoked(async (userId, sessionIds) => {
    await fastify.publish([userId], { type: 'session.revoked', data: { sessionIds } })
  })

  function takeToken (client: Client): boolean {
    const now = Date.now()
    client.tokens = Math.min(config.WS_RATE_BURST, client.tokens + ((now - client.refilledAt) / 1000) * config.WS_RATE_PER_SECOND)
    client.refilledAt = now
    if (client.tokens < 1) return false
    client.tokens -= 1
    return true
  }

  // What each handler resolves to is the ack's data, typed by the schema the
  // AsyncAPI document describes it with (sync also releases held events after its ack).
  type Handler<T extends RequestType> = (client: Client, data: RequestData<T>) => Promise<T extends 'sync' ? { result: AckData<'sync'>, after: () => void } : AckData<T>>
  const handlers: { [T in RequestType]: Handler<T> } = {
    send: async (client, data) => {
      const { conversationId, ...input } = data
      // The same per-user budget as POST …/messages, across every socket and instance.
      await fastify.requestLimits.consume('send', client.userId)
      return fastify.messages.send(conversationId, client.userId, input)
    },
    edit: async (client, data) => ({ message: await fastify.messages.edit(data.messageId, client.userId, data.text) }),
    delete: async (client, data) => ({ message: await fastify.messages.remove(data.messageId, client.userId) }),
    react: async (client, data) => ({ message: await fastify.messages.react(data.messageId, client.userId, data.emoji, data.on) }),
    typing: async (client, data) => {
      const conversation = await fastify.conversations.getForMember(data.conversationId, client.userId)
      const state = data.state ?? 'start'
      const now = Date.now()
      // At most one start a second per conversation goes out; stops always do.
      if (state === 'start' && now - (client.typingAt.get(data.conversationId) ?? 0) < 1000) return { sent: false }
      client.typingAt.set(data.conversationId, now)
      const others = conversation.memberIds.filter((id) => id !== client.userId)
      await fastify.publish(others, { type: 'typing', data: { conversationId: data.conversationId, userId: client.userId, state, expiresAt: new Date(now + config.TYPING_TTL_MS).toISOString() } })
      return { sent: true }
    },
    read: async (client, data) => fastify.conversations.markRead(data.conversationId, client.userId, data.seq),
    sync: async (client, data) => {
      const ids = data.conversations.map((c) => c.conversationId)
      if (new Set(ids).size !== ids.length) throw new FrameInvalid('data.conversations must name each conversation once')
      // Hold live events of these conversations from now on, then fetch: what
      // is committed before the fetch is in it, what comes after is held.
      for (const conversationId of ids) if (!client.syncing.has(conversationId)) client.syncing.set(conversationId, [])
      // Events held since the handshake join the hold of their conversation.
      const heldBefore = client.held
      client.held = null
      const passOn: RealtimeEvent[] = []
      for (const event of heldBefore ?? []) {
        const waiting = client.syncing.get(changeOf(event)!.conversationId)
        if (waiting) waiting.push(event)
        else passOn.push(event)
      }
      // One ack is bounded in changes and in bytes, however many conversations
      // it names: those past the budget answer hasMore and are asked for again.
      let changesLeft = SYNC_MAX_CHANGES
      // Never more than half of what a socket may have unsent, so a catch-up
      // and the live events behind it never trip the slow-consumer close.
      let bytesLeft = Math.min(SYNC_MAX_BYTES, Math.floor(config.WS_MAX_BUFFERED_BYTES / 2))
      const results: Array<{ conversationId: string } & Omit<ChangesPage, 'bytes'>> = []
      try {
        for (const { conversationId, since } of data.conversations) {
          const { bytes, ...page } = changesLeft > 0 && bytesLeft > 0
            ? await fastify.messages.changes(conversationId, client.userId, since, Math.min(data.limit ?? 500, changesLeft), bytesLeft)
            : { changes: [], cursor: since, hasMore: true, lastSeq: (await fastify.conversations.getForMember(conversationId, client.userId)).lastSeq, bytes: 0 }
          changesLeft -= page.changes.length
          bytesLeft -= bytes
          const seen = client.delivered.get(conversationId)
          results.push({ conversationId, ...page, changes: page.changes.filter((m) => !seen?.has(m.changeSeq)) })
        }
      } catch (err) {
        for (const conversationId of ids) client.syncing.delete(conversationId)
        for (const event of passOn) deliverEvent(client, event)
        throw err
      }
      return {
        result: { conversations: results },
        // After the ack: release what was held, minus what the catch-up already had.
        after: () => {
          for (const page of results) {
            if (page.hasMore) continue // still catching up: keep holding until the last page
            const held = client.syncing.get(page.conversationId) ?? []
            client.syncing.delete(page.conversationId)
            client.caughtUpTo.set(page.conversationId, Math.max(page.cursor, client.caughtUpTo.get(page.conversationId) ?? 0))
            const sent = new Set(page.changes.map((m) => m.changeSeq))
            held
              .filter((event) => !sent.has(changeOf(event)!.changeSeq))
              .sort((a, b) => changeOf(a)!.changeSeq - changeOf(b)!.changeSeq)
              .forEach((event) => deliverEvent(client, event))
          }
          for (const event of passOn) deliverEvent(client, event)
          if (client.heldOverflow) {
            client.heldOverflow = false
            send(client, { type: 'resync', data: { reason: 'too-many-held-events' } })
          }
        }
      }
    },
    presence: async (client, data) => {
      const contacts = new Set(await fastify.conversations.contacts(client.userId))
      // Only people you share a conversation with: presence is not public.
      return { users: await presence.states(data.userIds.filter((id) => contacts.has(id))) }
    },
    ping: async () => ({ pong: Date.now() })
  }

  function fail (client: Client, ref: string | null, err: unknown): void {
    const e = err as FastifyError
    if (e.statusCode !== undefined && e.statusCode < 500 && typeof e.code === 'string') {
      send(client, { type: 'error', ref, code: e.code === 'FST_ERR_VALIDATION' ? 'VALIDATION_ERROR' : e.code, message: e.message })
      return
    }
    if (e.statusCode === 503 || fastify.isDependencyError(err) || fastify.dependenciesDown().length > 0) {
      log.warn({ err, userId: client.userId }, 'websocket request failed: service unavailable')
      const ours = e.statusCode === 503 && typeof e.code === 'string'
      send(client, { type: 'error', ref, code: ours ? e.code : 'SERVICE_UNAVAILABLE', message: ours ? e.message : 'A service this request needs is unavailable; retry shortly' })
      return
    }
    log.error({ err, userId: client.userId }, 'websocket request failed')
    send(client, { type: 'error', ref, code: 'INTERNAL_ERROR', message: 'Internal Server Error' })
  }

  /**
   * Closes a socket that broke the rules, once every request it already had
   * carried out is acknowledged: an ack must never be overtaken by the close.
   */
  function cutOff (client: Client, code: number, reason: string): void {
    if (client.cutOff) return
    client.cutOff = true
    const answered = Promise.allSettled([...client.pending])
    const deadline = new Promise((resolve) => setTimeout(resolve, CUT_OFF_WAIT_MS).unref())
    Promise.race([answered, deadline]).then(() => client.socket.close(code, reason)).catch(() => {})
  }

  function readFrame (raw: Buffer, isBinary: boolean): { envelope?: { type: string, ref?: string, data?: unknown }, problem?: string } {
    if (isBinary) return { problem: 'Frames must be JSON text' }
    let frame: unknown
    try {
      frame = JSON.parse(raw.toString('utf8'))
    } catch {
      return { problem: 'Frame is not valid JSON' }
    }
    return envelopeCheck(frame) ? { envelope: frame } : { problem: 'Frame must be {type, ref?, data?}' }
  }

  async function onFrame (client: Client, raw: Buffer, isBinary: boolean): Promise<void> {
    metrics.wsFrames.inc({ direction: 'in' })
    if (client.cutOff) return
    // The envelope is read first (frames are at most 64 KiB), so that every
    // answer to a request, a refusal included, echoes its ref.
    const { envelope, problem } = readFrame(raw, isBinary)
    const ref = envelope?.ref ?? null
    if (!takeToken(client)) {
      client.strikes++
      // Errors first; a client that keeps going regardless is cut off.
      if (client.strikes > config.WS_RATE_BURST) {
        stats.rateLimited++
        cutOff(client, CLOSE.policy, 'rate limit')
      } else {
        fail(client, ref, new RateLimited())
      }
      return
    }
    if (!envelope) return fail(client, null, new BadFrame(problem))
    const type = envelope.type as RequestType
    if (!Object.hasOwn(handlers, type)) return fail(client, ref, new UnknownType(envelope.type))
    const data = envelope.data ?? {}
    const check = dataChecks[type]
    if (!check(data)) {
      const first = check.errors?.[0]
      return fail(client, ref, new FrameInvalid(first ? `data${first.instancePath.replaceAll('/', '.')} ${first.message ?? 'is invalid'}` : 'Invalid data'))
    }
    const work = answer(client, type, ref, data)
    client.pending.add(work)
    await work.finally(() => client.pending.delete(work))
  }

  async function answer (client: Client, type: RequestType, ref: string | null, data: unknown): Promise<void> {
    try {
      const result = await (handlers[type] as Handler<RequestType>)(client, data as never)
      if (type === 'sync') {
        const { result: body, after } = result as { result: unknown, after: () => void }
        send(client, { type: 'ack', ref, data: body })
        after()
      } else {
        send(client, { type: 'ack', ref, data: result })
      }
    } catch (err) {
      fail(client, ref, err)
    }
  }

  async function accept (socket: WebSocket, user: { id: string, sessionId: string }, options: { holdUntilSync?: boolean } = {}): Promise<void> {
    const client: Client = { id: randomUUID(), userId: user.id, sessionId: user.sessionId, socket, alive: true, tokens: config.WS_RATE_BURST, refilledAt: Date.now(), strikes: 0, typingAt: new Map(), pending: new Set(), cutOff: false, syncing: new Map(), delivered: new Map(), held: options.holdUntilSync ? [] : null, heldOverflow: false, caughtUpTo: new Map() }
    if (client.held) {
      // A client that asked to resume but never syncs gets its events anyway.
      setTimeout(() => {
        const held = client.held
        client.held = null
        for (const event of held ?? []) deliverEvent(client, event)
      }, HOLD_UNTIL_SYNC_MS).unref()
    }
    let local = clients.get(user.id)
    if (!local) {
      clients.set(user.id, local = new Set())
      subscriptions.set(user.id, subscriber.ssubscribe(fastify.userChannel(user.id)))
    }
    local.add(client)
    count++
    metrics.wsConnections.inc()

    // Listeners first (before any await), so that no frame of an eager client is lost.
    socket.on('pong', () => { client.alive = true })
    socket.on('message', (raw: Buffer, isBinary: boolean) => { onFrame(client, raw, isBinary).catch((err) => fail(client, null, err)) })
    socket.on('error', (err) => log.debug({ err }, 'websocket error'))
    socket.on('close', () => {
      local.delete(client)
      if (local.size === 0 && clients.get(user.id) === local) {
        clients.delete(user.id)
        subscriptions.delete(user.id)
        // Commands on the subscriber run in order: a new first socket of this
        // user subscribes again after this, and stays subscribed.
        if (!closing) subscriber.sunsubscribe(fastify.userChannel(user.id)).catch((err) => log.debug({ err }, 'unsubscribe failed'))
      }
      count--
      metrics.wsConnections.dec()
      if (!closing) presence.disconnected(user.id, client.id).catch((err) => log.warn({ err }, 'presence update failed'))
    })
    // Subscribed before the user is announced online. Events published in the
    // moment before the subscription is in place are what a resuming client's
    // sync brings (the same as for anything published before it connected).
    await subscriptions.get(user.id)
    await presence.connected(user.id, client.id)
  }

  // Dead sockets (no pong since the last ping) are terminated.
  const heartbeat = setInterval(() => {
    for (const local of clients.values()) {
      for (const client of local) {
        if (!client.alive) {
          stats.deadPeers++
          client.socket.terminate()
          continue
        }
        client.alive = false
        client.socket.ping()
      }
    }
  }, config.WS_HEARTBEAT_MS)
  // Presence entries of live sockets are kept from expiring; expired ones
  // (dead instances) are swept.
  const presenceTimer = setInterval(() => {
    const entries = [...clients.values()].flatMap((local) => [...local].map((c) => ({ userId: c.userId, connectionId: c.id })))
    presence.heartbeat(entries)
      .then(() => presence.sweep())
      .catch((err) => log.warn({ err }, 'presence heartbeat failed'))
  }, Math.max(200, (config.PRESENCE_TTL_S * 1000) / 3))
  heartbeat.unref()
  presenceTimer.unref()

  // The sockets themselves are closed (1012) by plugins/websocket.ts. Their
  // presence entries are left to lapse: clients reconnect elsewhere, and those
  // that do not are announced offline by the sweep of a surviving instance.
  let closing = false
  fastify.addHook('preClose', async () => {
    closing = true
    clearInterval(heartbeat)
    clearInterval(presenceTimer)
  })

  fastify.decorate('realtime', { accept, connectionCount: () => count, stats: () => ({ ...stats, subscribedUsers: clients.size }) })
}, { name: 'realtime', dependencies: ['config', 'db', 'redis', 'events', 'accounts', 'chat', 'websocket', 'metrics'] })
