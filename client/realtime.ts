// The real-time side of the SDK: one WebSocket, kept open.
//
// - Reconnects by itself with exponential back-off and full jitter; a server
//   restarting (1012) is retried at once, a session that ended (4001) signs the
//   client out, a policy close (1008) stops.
// - Each message change reaches the application once and in order per
//   conversation: the SDK keeps, per conversation, the last change number it
//   delivered (a pluggable cursor store). A change that arrives ahead of one
//   still missing is held back; if the gap is not filled within a moment (the
//   server publishes concurrent writes in the order they finish), it catches
//   up with `sync`. After a reconnect it resumes (`?resume=1`) and syncs every
//   conversation it knows, so nothing sent meanwhile is lost.
// - Outbox: a send is kept (a pluggable store) until the server acknowledges
//   it and re-sent with the same clientMsgId after every reconnect, so a flaky
//   network neither loses nor duplicates it.
import type { Static } from '@sinclair/typebox'
import type { Message } from '../schemas/chat.js'
import type { AckData, RequestData, RequestType, eventData } from '../schemas/ws.js'
import { ParleyError } from './errors.js'
import type { HttpSession } from './http.js'
import type { CursorStore, OutboxStore, PendingMessage } from './stores.js'

export type MessageView = Static<typeof Message>
export type EventData<T extends keyof typeof eventData> = Static<(typeof eventData)[T]>

/** How a message change reached the application. */
export type ChangeKind = 'created' | 'updated' | 'deleted' | 'reaction' | 'caught-up'

export type ConnectionState = 'idle' | 'connecting' | 'syncing' | 'open' | 'reconnecting' | 'stopped'

export interface RealtimeEvents {
  /** A message's current state, once per change, in change order within its conversation. */
  message: { message: MessageView, kind: ChangeKind }
  'conversation.updated': EventData<'conversation.updated'>
  'conversation.removed': EventData<'conversation.removed'>
  'read.updated': EventData<'read.updated'>
  typing: EventData<'typing'>
  presence: EventData<'presence'>
  state: { state: ConnectionState, attempt: number }
  /** A send that the server refused for good (not a network or capacity problem). */
  sendFailed: { pending: PendingMessage, error: ParleyError }
}

/** The WHATWG WebSocket surface the SDK uses (the browser's, or `ws` in Node). */
export interface WebSocketLike {
  readonly readyState: number
  send: (data: string) => void
  close: (code?: number, reason?: string) => void
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number, reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
}
/**
 * A WebSocket class: the browser's, or `ws` in Node 20. Typed loosely on
 * purpose: implementations type their event objects each their own way; what
 * the SDK uses of them is WebSocketLike.
 */
export type WebSocketFactory = new (url: string) => object

export interface RealtimeOptions {
  http: HttpSession
  baseUrl: string
  WebSocket?: WebSocketFactory
  cursors: CursorStore
  outbox: OutboxStore
  /** First reconnect delay (ms, default 500), doubled per attempt up to maxDelayMs (default 15 s), with full jitter. */
  minDelayMs?: number
  maxDelayMs?: number
  /** How long a change may wait for an earlier one before the SDK catches up (default 500 ms). */
  gapWaitMs?: number
  /** A request without an answer within this fails (default 15 s). */
  requestTimeoutMs?: number
  /** At most one typing `start` per conversation this often (default 3 s). */
  typingEveryMs?: number
}

interface ConversationCursor {
  /** Every change up to this one was delivered. */
  cursor: number
  /** Changes that arrived ahead of a missing one, by change number. */
  ahead: Map<number, { message: MessageView, kind: ChangeKind }>
  gapTimer: ReturnType<typeof setTimeout> | null
  catchingUp: boolean
}

interface Waiting { resolve: (data: unknown) => void, reject: (err: ParleyError) => void, timer: ReturnType<typeof setTimeout> }

const OPEN = 1
const RETRYABLE_SEND_CODES = new Set(['RATE_LIMITED', 'SERVICE_UNAVAILABLE', 'BUSY', 'INTERNAL_ERROR', 'NETWORK_ERROR', 'OVERLOADED'])
const KIND_OF_EVENT: Record<string, ChangeKind> = { 'message.created': 'created', 'message.updated': 'updated', 'message.deleted': 'deleted', 'reaction.updated': 'reaction' }
const SYNC_BATCH = 100

type Handler<T> = (data: T) => void

export class Realtime {
  private socket: WebSocketLike | null = null
  private state: ConnectionState = 'idle'
  private attempt = 0
  private refs = 0
  private readonly waiting = new Map<string, Waiting>()
  private readonly conversations = new Map<string, ConversationCursor>()
  private readonly sending = new Map<string, { resolve: (m: MessageView) => void, reject: (e: ParleyError) => void }>()
  private readonly inFlight = new Set<string>()
  private readonly handlers = new Map<keyof RealtimeEvents, Set<Handler<never>>>()
  private readonly typingSentAt = new Map<string, number>()
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private loaded: Promise<void> | null = null
  constructor (private readonly options: RealtimeOptions) {}

  private get WebSocketImpl (): WebSocketFactory {
    const impl = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket
    if (impl === undefined) throw new Error('No WebSocket implementation: pass one (e.g. the `ws` package in Node 20)')
    return impl
  }

  get connectionState (): ConnectionState { return this.state }

  on<K extends keyof RealtimeEvents> (type: K, handler: Handler<RealtimeEvents[K]>): () => void {
    let set = this.handlers.get(type)
    if (!set) this.handlers.set(type, set = new Set())
    set.add(handler as Handler<never>)
    return () => { set.delete(handler as Handler<never>) }
  }

  private emit<K extends keyof RealtimeEvents> (type: K, data: RealtimeEvents[K]): void {
    for (const handler of this.handlers.get(type) ?? []) {
      try {
        (handler as Handler<RealtimeEvents[K]>)(data)
      } catch (err) {
        // An application handler's failure must not break delivery to the others.
        queueMicrotask(() => { throw err })
      }
    }
  }

  private setState (state: ConnectionState): void {
    if (this.state === state) return
    this.state = state
    this.emit('state', { state, attempt: this.attempt })
  }

  /** Opens the socket (and keeps it open until close()). Resolves once connected and caught up. */
  async connect (): Promise<void> {
    if (this.state === 'stopped') this.state = 'idle'
    const ready = new Promise<void>((resolve, reject) => {
      const off = this.on('state', ({ state }) => {
        if (state === 'open') { off(); resolve() }
        if (state === 'stopped') { off(); reject(new ParleyError('STOPPED', 'The connection was stopped')) }
      })
    })
    if (this.state === 'idle') this.open().catch(() => {})
    return ready
  }

  /** Closes the socket for good (until connect() again). Unacknowledged sends stay in the outbox. */
  close (): void {
    this.setState('stopped')
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.socket?.close(1000, 'client closed')
    this.socket = null
    this.failWaiting(new ParleyError('STOPPED', 'The connection was closed'))
  }

  /**
   * Tells the SDK the change number the application already has for a
   * conversation (e.g. from a conversation list or a history page), so that
   * it neither repeats older changes nor asks for them.
   */
  async track (conversationId: string, changeSeq: number): Promise<void> {
    await this.load()
    const state = this.conversations.get(conversationId)
    if (state && state.cursor >= changeSeq) return
    if (state) state.cursor = changeSeq
    else this.conversations.set(conversationId, { cursor: changeSeq, ahead: new Map(), gapTimer: null, catchingUp: false })
    await this.options.cursors.set(conversationId, changeSeq)
  }

  /** Sends a message through the outbox: resolves with the stored message once acknowledged, however many reconnects that takes. */
  async send (input: { conversationId: string, text?: string, attachments?: string[], replyTo?: string, clientMsgId?: string }): Promise<MessageView> {
    const pending: PendingMessage = {
      clientMsgId: input.clientMsgId ?? randomId(),
      conversationId: input.conversationId,
      text: input.text,
      attachments: input.attachments,
      replyTo: input.replyTo,
      queuedAt: Date.now()
    }
    await this.options.outbox.put(pending)
    const acked = new Promise<MessageView>((resolve, reject) => this.sending.set(pending.clientMsgId, { resolve, reject }))
    if (this.state === 'open') this.transmit(pending)
    return acked
  }

  /** Sends whatever the outbox holds (after a reload, with a persistent outbox). */
  async flushOutbox (): Promise<void> {
    if (this.state !== 'open') return
    for (const pending of await this.options.outbox.all()) this.transmit(pending)
  }

  /** Typing, at most once per `typingEveryMs` per conversation; `stop` is always sent. */
  typing (conversationId: string, state: 'start' | 'stop' = 'start'): void {
    const now = Date.now()
    if (state === 'start' && now - (this.typingSentAt.get(conversationId) ?? 0) < (this.options.typingEveryMs ?? 3000)) return
    this.typingSentAt.set(conversationId, state === 'start' ? now : 0)
    if (this.state === 'open') this.request('typing', { conversationId, state }).catch(() => {})
  }

  /** A typed request over the socket (edit, delete, react, read, presence, ping …). */
  request<T extends RequestType> (type: T, data: RequestData<T>): Promise<AckData<T>> {
    const socket = this.socket
    if (!socket || socket.readyState !== OPEN) return Promise.reject(new ParleyError('NETWORK_ERROR', 'Not connected'))
    const ref = `r${++this.refs}`
    return new Promise<AckData<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(ref)
        reject(new ParleyError('TIMEOUT', `No answer to ${type} within ${this.options.requestTimeoutMs ?? 15000} ms`))
      }, this.options.requestTimeoutMs ?? 15000)
      this.waiting.set(ref, { resolve: resolve as (d: unknown) => void, reject, timer })
      socket.send(JSON.stringify({ type, ref, data }))
    })
  }

  // ---- connection -------------------------------------------------------------

  private load (): Promise<void> {
    this.loaded ??= (async () => {
      for (const { conversationId, changeSeq } of await this.options.cursors.all()) {
        if (!this.conversations.has(conversationId)) this.conversations.set(conversationId, { cursor: changeSeq, ahead: new Map(), gapTimer: null, catchingUp: false })
      }
    })()
    return this.loaded
  }

  private wsUrl (ticket: string, resume: boolean): string {
    let base = this.options.baseUrl
    if (base === '') {
      const location = (globalThis as { location?: { protocol: string, host: string } }).location
      if (!location) throw new Error('baseUrl is required outside a browser')
      base = `${location.protocol}//${location.host}`
    }
    return `${base.replace(/^http/, 'ws')}/ws?ticket=${encodeURIComponent(ticket)}${resume ? '&resume=1' : ''}`
  }

  private async open (): Promise<void> {
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting')
    try {
      await this.load()
      const { ticket } = await this.options.http.request<{ ticket: string }>('POST', '/api/ws/ticket')
      if (this.state === 'stopped') return
      const resume = this.conversations.size > 0
      const socket = new this.WebSocketImpl(this.wsUrl(ticket, resume)) as WebSocketLike
      this.socket = socket
      socket.onmessage = (event) => { this.onFrame(typeof event.data === 'string' ? event.data : String(event.data)) }
      socket.onclose = (event) => { if (this.socket === socket) this.onClose(event.code) }
      socket.onerror = () => {} // a close follows
      socket.onopen = () => { this.onOpen(resume).catch(() => socket.close(4000, 'resume failed')) }
    } catch {
      // Signed out (refresh refused): nothing to reconnect for.
      if (!this.options.http.isSignedIn) { this.stop(); return }
      this.scheduleReconnect()
    }
  }

  private async onOpen (resume: boolean): Promise<void> {
    this.setState('syncing')
    if (resume) await this.catchUp([...this.conversations.keys()])
    this.attempt = 0
    this.setState('open')
    await this.flushOutbox()
  }

  private onClose (code: number): void {
    this.socket = null
    this.failWaiting(new ParleyError('NETWORK_ERROR', `Connection closed (${code})`))
    this.inFlight.clear()
    if (this.state === 'stopped') return
    if (code === 4001) { // the session ended
      this.options.http.forget('SESSION_REVOKED')
      this.stop()
      return
    }
    if (code === 1008) { this.stop(); return } // policy: reconnecting would be refused the same way
    this.scheduleReconnect(code === 1012 ? 0 : undefined)
  }

  private stop (): void {
    this.setState('stopped')
    for (const { reject } of this.sending.values()) reject(new ParleyError('STOPPED', 'The connection stopped; the message stays in the outbox'))
    this.sending.clear()
  }

  private scheduleReconnect (delayMs?: number): void {
    if (this.state === 'stopped') return
    this.attempt++
    this.setState('reconnecting')
    const ceiling = Math.min(this.options.maxDelayMs ?? 15_000, (this.options.minDelayMs ?? 500) * 2 ** (this.attempt - 1))
    const delay = delayMs ?? Math.random() * ceiling
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.open().catch(() => {}) }, delay)
  }

  private failWaiting (error: ParleyError): void {
    for (const [ref, waiting] of this.waiting) {
      clearTimeout(waiting.timer)
      waiting.reject(error)
      this.waiting.delete(ref)
    }
  }

  // ---- frames -------------------------------------------------------------------

  private onFrame (raw: string): void {
    let frame: { type: string, ref?: string | null, data?: unknown, code?: string, message?: string }
    try {
      frame = JSON.parse(raw)
    } catch {
      return
    }
    if ((frame.type === 'ack' || frame.type === 'error') && frame.ref) {
      const waiting = this.waiting.get(frame.ref)
      if (!waiting) return
      this.waiting.delete(frame.ref)
      clearTimeout(waiting.timer)
      if (frame.type === 'ack') waiting.resolve(frame.data)
      else waiting.reject(new ParleyError(frame.code ?? 'ERROR', frame.message ?? 'Request failed'))
      return
    }
    const kind = KIND_OF_EVENT[frame.type]
    if (kind) {
      const { message } = frame.data as { message: MessageView }
      this.deliver(message, kind)
      return
    }
    switch (frame.type) {
      case 'resync':
        this.catchUp([...this.conversations.keys()]).catch(() => {})
        return
      case 'conversation.removed':
        this.forget((frame.data as EventData<'conversation.removed'>).conversationId)
        return
      case 'conversation.updated':
      case 'read.updated':
      case 'typing':
      case 'presence':
        this.emit(frame.type, frame.data as never)
    }
  }

  /** Delivers a live change in order: the next one at once, one ahead of a gap after the gap is filled. */
  private deliver (message: MessageView, kind: ChangeKind): void {
    let state = this.conversations.get(message.conversationId)
    if (!state) {
      // A conversation the application has not seen: it starts here.
      state = { cursor: message.changeSeq - 1, ahead: new Map(), gapTimer: null, catchingUp: false }
      this.conversations.set(message.conversationId, state)
    }
    if (message.changeSeq <= state.cursor) return // delivered already
    if (message.changeSeq > state.cursor + 1 || state.catchingUp) {
      state.ahead.set(message.changeSeq, { message, kind })
      if (!state.catchingUp) this.awaitGap(message.conversationId, state)
      return
    }
    this.advance(message.conversationId, state, message, kind)
    this.drain(message.conversationId, state)
  }

  /** Changes wait ahead of a gap: give the missing one a moment, then catch up. */
  private awaitGap (conversationId: string, state: ConversationCursor): void {
    if (state.gapTimer) return
    state.gapTimer = setTimeout(() => {
      state.gapTimer = null
      if (state.ahead.size > 0) this.catchUp([conversationId]).catch(() => {})
    }, this.options.gapWaitMs ?? 500)
  }

  private advance (conversationId: string, state: ConversationCursor, message: MessageView, kind: ChangeKind): void {
    state.cursor = message.changeSeq
    this.options.cursors.set(conversationId, message.changeSeq).catch(() => {})
    this.emit('message', { message, kind })
  }

  private drain (conversationId: string, state: ConversationCursor): void {
    for (;;) {
      for (const seq of state.ahead.keys()) if (seq <= state.cursor) state.ahead.delete(seq)
      const next = state.ahead.get(state.cursor + 1)
      if (!next) break
      state.ahead.delete(state.cursor + 1)
      this.advance(conversationId, state, next.message, next.kind)
    }
    if (state.ahead.size === 0 && state.gapTimer) {
      clearTimeout(state.gapTimer)
      state.gapTimer = null
    }
  }

  /** No longer a member: the conversation is dropped from tracking, and the application told. */
  private forget (conversationId: string): void {
    const state = this.conversations.get(conversationId)
    if (state?.gapTimer) clearTimeout(state.gapTimer)
    this.conversations.delete(conversationId)
    this.options.cursors.delete(conversationId).catch(() => {})
    this.emit('conversation.removed', { conversationId })
  }

  /** Asks for every change after each conversation's cursor, page by page, and delivers them in order. */
  private async catchUp (conversationIds: string[]): Promise<void> {
    const wanted = conversationIds.filter((id) => this.conversations.has(id) && !this.conversations.get(id)!.catchingUp)
    for (const id of wanted) this.conversations.get(id)!.catchingUp = true
    // Batches of at most SYNC_BATCH conversations; a conversation with more to come is asked again.
    const batches: string[][] = []
    for (let i = 0; i < wanted.length; i += SYNC_BATCH) batches.push(wanted.slice(i, i + SYNC_BATCH))
    try {
      for (let batch = batches.shift(); batch !== undefined; batch = batches.shift()) {
        batch = batch.filter((id) => this.conversations.has(id))
        if (batch.length === 0) continue
        let ack: AckData<'sync'>
        try {
          ack = await this.request('sync', { conversations: batch.map((conversationId) => ({ conversationId, since: this.conversations.get(conversationId)!.cursor })) })
        } catch (err) {
          // Removed from one of them while away: the server refuses the whole
          // request, so ask one by one and drop the ones that are gone.
          if (!(err instanceof ParleyError) || err.code !== 'CONVERSATION_NOT_FOUND') throw err
          if (batch.length === 1) this.forget(batch[0]!)
          else batches.unshift(...batch.map((id) => [id]))
          continue
        }
        const more: string[] = []
        for (const page of ack.conversations) {
          const state = this.conversations.get(page.conversationId)!
          const changes = [...(page.changes as MessageView[])].sort((a, b) => a.changeSeq - b.changeSeq)
          for (const message of changes) {
            if (message.changeSeq <= state.cursor) continue
            // A live change held back may be older than the state sync reports: the newer one wins.
            this.advance(page.conversationId, state, message, state.ahead.get(message.changeSeq)?.kind ?? 'caught-up')
          }
          if (page.cursor > state.cursor) {
            state.cursor = page.cursor
            this.options.cursors.set(page.conversationId, page.cursor).catch(() => {})
          }
          if (page.hasMore) more.push(page.conversationId)
        }
        if (more.length > 0) batches.push(more)
      }
    } finally {
      for (const id of conversationIds) {
        const state = this.conversations.get(id)
        if (!state) continue
        state.catchingUp = false
        this.drain(id, state)
        if (state.ahead.size > 0) this.awaitGap(id, state)
      }
    }
  }

  // ---- outbox -------------------------------------------------------------------

  private transmit (pending: PendingMessage): void {
    if (this.inFlight.has(pending.clientMsgId)) return
    this.inFlight.add(pending.clientMsgId)
    const data = { conversationId: pending.conversationId, clientMsgId: pending.clientMsgId, ...(pending.text !== undefined ? { text: pending.text } : {}), ...(pending.attachments ? { attachments: pending.attachments } : {}), ...(pending.replyTo ? { replyTo: pending.replyTo } : {}) }
    this.request('send', data).then(async (ack) => {
      this.inFlight.delete(pending.clientMsgId)
      await this.options.outbox.delete(pending.clientMsgId)
      this.sending.get(pending.clientMsgId)?.resolve(ack.message as MessageView)
      this.sending.delete(pending.clientMsgId)
    }, async (err: ParleyError) => {
      this.inFlight.delete(pending.clientMsgId)
      if (err.code === 'NETWORK_ERROR' || err.code === 'STOPPED') return // re-sent after the reconnect
      if (RETRYABLE_SEND_CODES.has(err.code) || err.code === 'TIMEOUT') {
        setTimeout(() => { if (this.state === 'open') this.transmit(pending) }, 1000 * (1 + Math.random()))
        return
      }
      await this.options.outbox.delete(pending.clientMsgId)
      this.emit('sendFailed', { pending, error: err })
      this.sending.get(pending.clientMsgId)?.reject(err)
      this.sending.delete(pending.clientMsgId)
    })
  }
}

function randomId (): string {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}
