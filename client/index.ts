// Parley's client SDK: every HTTP route as a typed method, token refresh,
// and a real-time connection that reconnects, resumes and keeps an outbox.
// Types come from the server's own TypeBox schemas (`schemas/`), so the SDK
// cannot drift from the API; it has no runtime dependency.
import type { Static } from '@sinclair/typebox'
import type * as Auth from '../schemas/auth.js'
import type * as Chat from '../schemas/chat.js'
import type * as Integrations from '../schemas/integrations.js'
import { HttpSession, type HttpOptions } from './http.js'
import { Realtime, type RealtimeOptions, type WebSocketFactory } from './realtime.js'
import { memoryCursorStore, memoryOutboxStore, type CursorStore, type OutboxStore } from './stores.js'

import { ParleyError } from './errors.js'

export { ParleyError, isRetryable } from './errors.js'
export { memoryCursorStore, memoryOutboxStore } from './stores.js'
export type { CursorStore, OutboxStore, PendingMessage } from './stores.js'
export type { ChangeKind, ConnectionState, MessageView, RealtimeEvents, WebSocketFactory, WebSocketLike } from './realtime.js'

export type SelfUser = Static<typeof Auth.SelfUser>
export type PublicUser = Static<typeof Auth.PublicUser>
export type SignedIn = Static<typeof Auth.SignedInResponse>
export type Session = Static<typeof Auth.SessionsResponse>['sessions'][number]
export type Conversation = Static<typeof Chat.Conversation>
export type ConversationPage = Static<typeof Chat.ConversationPage>
export type Message = Static<typeof Chat.Message>
export type MessagePage = Static<typeof Chat.MessagePage>
export type ChangesPage = Static<typeof Chat.ChangesPage>
export type MediaInfo = Static<typeof Chat.MediaInfo>
export type NewConversation = Static<typeof Chat.CreateConversationBody>
export type ProfilePatch = Static<typeof Chat.ProfilePatch>
export type ReadState = Static<typeof Chat.ReadState>
export type ThreadPage = Static<typeof Chat.ThreadPage>
export type UserPage = Static<typeof Chat.UserPage>
export type PushSubscriptionInput = Static<typeof Integrations.PushSubscriptionBody>
export type PushSubscriptionView = Static<typeof Integrations.PushSubscriptionView>
export type PushPayload = Static<typeof Integrations.PushPayload>
export type Bot = Static<typeof Integrations.BotView>
export type ApiKey = Static<typeof Integrations.ApiKeyView>
export type Webhook = Static<typeof Integrations.WebhookView>
export type WebhookDelivery = Static<typeof Integrations.WebhookDelivery>
export type WebhookEvent = Static<typeof Integrations.WebhookEvent>
export type NewWebhook = Static<typeof Integrations.CreateWebhookBody>
export type WebhookPatch = Static<typeof Integrations.WebhookPatch>

export interface ParleyClientOptions extends HttpOptions {
  /** The WebSocket class (default: the global one; in Node 20 pass `ws`). */
  WebSocket?: WebSocketFactory
  /** Where per-conversation cursors are kept (default: memory). */
  cursors?: CursorStore
  /** Where unacknowledged sends are kept (default: memory). */
  outbox?: OutboxStore
  realtime?: Omit<RealtimeOptions, 'http' | 'baseUrl' | 'WebSocket' | 'cursors' | 'outbox'>
}

type Ok = { status: 'ok' }
type Accepted = { status: 'accepted', message: string }

export class ParleyClient {
  readonly http: HttpSession
  readonly realtime: Realtime
  private user: SelfUser | null = null

  constructor (options: ParleyClientOptions) {
    this.http = new HttpSession(options)
    this.realtime = new Realtime({
      ...options.realtime,
      http: this.http,
      baseUrl: options.baseUrl,
      WebSocket: options.WebSocket,
      cursors: options.cursors ?? memoryCursorStore(),
      outbox: options.outbox ?? memoryOutboxStore()
    })
  }

  /** The signed-in user, as of the last sign-in or `me()`. */
  get currentUser (): SelfUser | null { return this.user }

  private signedIn (res: SignedIn): SignedIn {
    this.http.accept(res)
    this.user = res.user
    return res
  }

  // ---- accounts -----------------------------------------------------------------

  readonly auth = {
    /** Starts a registration: a 6-digit code is mailed to `email`. */
    register: (body: Static<typeof Auth.RegisterBody>) => this.http.request<Accepted>('POST', '/api/auth/register', { body, auth: false }),
    resendCode: (email: string) => this.http.request<Accepted>('POST', '/api/auth/register/resend', { body: { email }, auth: false }),
    /** Completes a registration with the mailed code; signs in. */
    verify: async (email: string, code: string) => this.signedIn(await this.http.request<SignedIn>('POST', '/api/auth/register/verify', { body: { email, code, includeRefreshToken: this.http.mode === 'token' }, auth: false })),
    login: async (login: string, password: string) => this.signedIn(await this.http.request<SignedIn>('POST', '/api/auth/login', { body: { login, password, includeRefreshToken: this.http.mode === 'token' }, auth: false })),
    /**
     * Picks up an existing session (cookie mode: the browser's cookies after a
     * reload; token mode: the refresh token passed in the options). Null when there is none.
     */
    resume: async (): Promise<SelfUser | null> => {
      try {
        await this.http.refresh()
        return await this.auth.me()
      } catch (err) {
        if (err instanceof ParleyError && err.status === 401) return null
        throw err
      }
    },
    /** Replaces the access token now (it is also done by itself before expiry and on a 401). */
    refresh: () => this.http.refresh(),
    /** Ends this session on the server and locally; closes the socket. */
    logout: async () => {
      this.realtime.close()
      try {
        await this.http.request<Ok>('POST', '/api/auth/logout', { body: this.http.mode === 'token' ? {} : undefined })
      } finally {
        this.http.forget(null)
        this.user = null
      }
    },
    logoutAll: () => this.http.request<Ok>('POST', '/api/auth/logout-all', { body: {} }),
    sessions: async () => (await this.http.request<{ sessions: Session[] }>('GET', '/api/auth/sessions')).sessions,
    endSession: (id: string) => this.http.request<Ok>('DELETE', `/api/auth/sessions/${encodeURIComponent(id)}`),
    me: async () => (this.user = await this.http.request<SelfUser>('GET', '/api/auth/me')),
    forgotPassword: (email: string) => this.http.request<Accepted>('POST', '/api/auth/password/forgot', { body: { email }, auth: false }),
    resetPassword: (email: string, code: string, newPassword: string) => this.http.request<Ok>('POST', '/api/auth/password/reset', { body: { email, code, newPassword }, auth: false }),
    changePassword: (currentPassword: string, newPassword: string) => this.http.request<Ok>('POST', '/api/auth/password/change', { body: { currentPassword, newPassword } })
  }

  // ---- people -------------------------------------------------------------------

  readonly users = {
    /** Your own profile (with email). */
    me: async () => (this.user = await this.http.request<SelfUser>('GET', '/api/users/me')),
    get: (id: string) => this.http.request<PublicUser>('GET', `/api/users/${id}`),
    search: (q: string, options: { cursor?: string, limit?: number } = {}) => this.http.request<UserPage>('GET', '/api/users', { query: { q, ...options } }),
    updateProfile: async (patch: ProfilePatch) => (this.user = await this.http.request<SelfUser>('PATCH', '/api/users/me', { body: patch })),
    setAvatar: async (image: Blob, filename = 'avatar') => (this.user = await this.http.request<SelfUser>('PUT', '/api/users/me/avatar', { form: imageForm(image, filename) })),
    removeAvatar: async () => (this.user = await this.http.request<SelfUser>('DELETE', '/api/users/me/avatar')),
    /** Everything the server holds about you, as one JSON document. */
    exportData: () => this.http.request<Static<typeof Chat.AccountExport>>('GET', '/api/users/me/export'),
    /** Erases your account (irreversible; see the API docs); signs this client out. */
    deleteAccount: async (password: string) => {
      await this.http.request<Ok>('DELETE', '/api/users/me', { body: { password } })
      this.realtime.close()
      this.http.forget(null)
      this.user = null
    },
    block: (id: string) => this.http.request<Ok>('PUT', `/api/users/${id}/block`),
    unblock: (id: string) => this.http.request<Ok>('DELETE', `/api/users/${id}/block`)
  }

  readonly media = {
    /** Uploads an image to attach to a message; pass its id in `attachments`. */
    upload: (image: Blob, filename = 'image') => this.http.request<MediaInfo>('POST', '/api/media', { form: imageForm(image, filename) }),
    /** The image itself (media needs the session, so a plain <img src> works only in cookie mode). */
    get: (id: string) => this.http.request<Blob>('GET', `/api/media/${id}`)
  }

  // ---- conversations ------------------------------------------------------------

  readonly conversations = {
    /** One page of your conversations, latest activity first; the real-time connection learns each one's change number. */
    list: async (options: { cursor?: string, limit?: number } = {}) => {
      const page = await this.http.request<ConversationPage>('GET', '/api/conversations', { query: options })
      await Promise.all(page.conversations.map((c) => this.realtime.track(c.id, c.changeSeq)))
      return page
    },
    /** Every page of your conversations. */
    all: async function * (this: ParleyClient, limit = 100): AsyncGenerator<Conversation> {
      let cursor: string | undefined
      do {
        const page = await this.conversations.list({ cursor, limit })
        yield * page.conversations
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
    }.bind(this),
    get: async (id: string) => {
      const conversation = await this.http.request<Conversation>('GET', `/api/conversations/${id}`)
      await this.realtime.track(conversation.id, conversation.changeSeq)
      return conversation
    },
    /** A direct conversation (the existing one if there is one) or a group. */
    create: (body: NewConversation) => this.http.request<Conversation>('POST', '/api/conversations', { body }),
    rename: (id: string, title: string) => this.http.request<Conversation>('PATCH', `/api/conversations/${id}`, { body: { title } }),
    addMembers: (id: string, userIds: string[]) => this.http.request<Conversation>('POST', `/api/conversations/${id}/members`, { body: { userIds } }),
    removeMember: (id: string, userId: string) => this.http.request<Conversation | undefined>('DELETE', `/api/conversations/${id}/members/${userId}`),
    mute: (id: string, until: string | null) => this.http.request<Conversation>('PUT', `/api/conversations/${id}/mute`, { body: { until } }),
    markRead: (id: string, seq: number) => this.http.request<ReadState>('POST', `/api/conversations/${id}/read`, { body: { seq } })
  }

  // ---- messages -----------------------------------------------------------------

  readonly messages = {
    /** A page of history: the latest, or before / after a seq. */
    page: (conversationId: string, options: { before?: number, after?: number, limit?: number } = {}) =>
      this.http.request<MessagePage>('GET', `/api/conversations/${conversationId}/messages`, { query: options }),
    /** Scrolls back: pages of older messages, newest page first, until the first message. */
    history: async function * (this: ParleyClient, conversationId: string, limit = 50): AsyncGenerator<Message[]> {
      let before: number | undefined
      for (;;) {
        const page = await this.messages.page(conversationId, { before, limit })
        if (page.messages.length > 0) yield page.messages
        if (!page.hasMore || page.messages.length === 0) return
        before = Math.min(...page.messages.map((m) => m.seq))
      }
    }.bind(this),
    changes: (conversationId: string, since: number, limit?: number) => this.http.request<ChangesPage>('GET', `/api/conversations/${conversationId}/changes`, { query: { since, limit } }),
    /** Sends over HTTP (idempotent by clientMsgId). `realtime.send` adds the outbox and retries. */
    send: (conversationId: string, body: { text?: string, attachments?: string[], clientMsgId: string, replyTo?: string }) =>
      this.http.request<Message>('POST', `/api/conversations/${conversationId}/messages`, { body }),
    /** A thread (by its first message's seq): the root, a page of replies after `after`, your unread count in it. */
    thread: (conversationId: string, rootSeq: number, options: { after?: number, limit?: number } = {}) =>
      this.http.request<ThreadPage>('GET', `/api/conversations/${conversationId}/threads/${rootSeq}`, { query: options }),
    markThreadRead: (conversationId: string, rootSeq: number, seq: number) =>
      this.http.request<ReadState>('POST', `/api/conversations/${conversationId}/threads/${rootSeq}/read`, { body: { seq } }),
    edit: (id: string, text: string) => this.http.request<Message>('PATCH', `/api/messages/${id}`, { body: { text } }),
    delete: (id: string) => this.http.request<Message>('DELETE', `/api/messages/${id}`),
    react: (id: string, emoji: string) => this.http.request<Message>('PUT', `/api/messages/${id}/reactions/${encodeURIComponent(emoji)}`),
    unreact: (id: string, emoji: string) => this.http.request<Message>('DELETE', `/api/messages/${id}/reactions/${encodeURIComponent(emoji)}`),
    search: (q: string, options: { conversationId?: string, limit?: number } = {}) =>
      this.http.request<{ messages: Message[] }>('GET', '/api/search/messages', { query: { q, ...options } })
  }

  // ---- integrations -------------------------------------------------------------

  readonly push = {
    /** The key to pass as `applicationServerKey` to `PushManager.subscribe()`. */
    publicKey: async () => (await this.http.request<{ vapidPublicKey: string }>('GET', '/api/push/config')).vapidPublicKey,
    /** Registers a device: pass `subscription.toJSON()`. */
    subscribe: (subscription: PushSubscriptionInput) => this.http.request<PushSubscriptionView>('POST', '/api/push/subscriptions', { body: subscription }),
    list: async () => (await this.http.request<{ subscriptions: PushSubscriptionView[] }>('GET', '/api/push/subscriptions')).subscriptions,
    unsubscribe: (id: string) => this.http.request<undefined>('DELETE', `/api/push/subscriptions/${id}`)
  }

  readonly bots = {
    /** A bot and its first API key (shown once). */
    create: (body: { username: string, displayName?: string }) => this.http.request<{ bot: Bot, apiKey: string }>('POST', '/api/bots', { body }),
    list: async () => (await this.http.request<{ bots: Bot[] }>('GET', '/api/bots')).bots,
    get: (id: string) => this.http.request<Bot>('GET', `/api/bots/${id}`),
    delete: (id: string) => this.http.request<undefined>('DELETE', `/api/bots/${id}`),
    addKey: (id: string) => this.http.request<{ key: ApiKey, apiKey: string }>('POST', `/api/bots/${id}/keys`),
    revokeKey: (id: string, keyId: string) => this.http.request<undefined>('DELETE', `/api/bots/${id}/keys/${keyId}`)
  }

  readonly webhooks = {
    /** A webhook and its signing secret (shown once). */
    create: (conversationId: string, body: NewWebhook) => this.http.request<{ webhook: Webhook, secret: string }>('POST', `/api/conversations/${conversationId}/webhooks`, { body }),
    list: async (conversationId: string) => (await this.http.request<{ webhooks: Webhook[] }>('GET', `/api/conversations/${conversationId}/webhooks`)).webhooks,
    update: (conversationId: string, webhookId: string, patch: WebhookPatch) => this.http.request<Webhook>('PATCH', `/api/conversations/${conversationId}/webhooks/${webhookId}`, { body: patch }),
    delete: (conversationId: string, webhookId: string) => this.http.request<undefined>('DELETE', `/api/conversations/${conversationId}/webhooks/${webhookId}`),
    deliveries: async (conversationId: string, webhookId: string) => (await this.http.request<{ deliveries: WebhookDelivery[] }>('GET', `/api/conversations/${conversationId}/webhooks/${webhookId}/deliveries`)).deliveries
  }
}

function imageForm (image: Blob, filename: string): FormData {
  const form = new FormData()
  form.append('file', image, filename)
  return form
}

export function createClient (options: ParleyClientOptions): ParleyClient {
  return new ParleyClient(options)
}
