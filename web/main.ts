// The Parley web app: plain DOM on top of the SDK, served at /app by the
// server itself (cookie mode: same origin, httpOnly cookies). Everything it
// needs is bundled at build time (scripts/build-web.ts).
import { createClient, ParleyError, type Conversation, type MessageView, type ParleyClient, type PublicUser, type SelfUser } from '../client/index.js'
import { indexedDbStores } from './stores.js'

const root = document.getElementById('root')!
const connection = document.getElementById('connection')!
const who = document.getElementById('who')!

/** A small element builder: h('button', { class: 'x', onclick }, 'text', child). */
function h<K extends keyof HTMLElementTagNameMap> (tag: K, props: Record<string, unknown> = {}, ...children: Array<Node | string | null | undefined | false>): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value as EventListener)
    else if (key === 'class') el.className = String(value)
    else if (value === true) el.setAttribute(key, '')
    else el.setAttribute(key, String(value))
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(child)
  return el
}

/** Runs a promise whose result the page does not wait for; a failure is reported, not lost. */
const detach = (promise: Promise<unknown>): void => { promise.catch((err: unknown) => console.error(err)) }

const errorText = (err: unknown): string => err instanceof ParleyError ? `${err.message} (${err.code})` : String(err)

// ---- signing in -------------------------------------------------------------------

const bootstrap = createClient({ baseUrl: '', mode: 'cookie' })

function showAuth (notice = ''): void {
  who.replaceChildren()
  const signInError = h('p', { class: 'error', role: 'alert' })
  const registerError = h('p', { class: 'error', role: 'alert' })
  const signIn = h('form', { 'aria-labelledby': 'signin-title' },
    h('h2', { id: 'signin-title' }, 'Sign in'),
    notice ? h('p', { class: 'hint' }, notice) : null,
    h('label', {}, 'Email or username', h('input', { name: 'login', autocomplete: 'username', required: true })),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    signInError)
  signIn.addEventListener('submit', (event) => {
    event.preventDefault()
    const data = new FormData(signIn)
    bootstrap.auth.login(String(data.get('login')), String(data.get('password')))
      .then((res) => start(res.user))
      .catch((err: unknown) => { signInError.textContent = errorText(err) })
  })
  const register = h('form', { 'aria-labelledby': 'register-title' },
    h('h2', { id: 'register-title' }, 'Create an account'),
    h('label', {}, 'Email', h('input', { name: 'email', type: 'email', autocomplete: 'email', required: true })),
    h('label', {}, 'Username', h('input', { name: 'username', autocomplete: 'username', required: true, pattern: '[A-Za-z0-9_]{3,30}' })),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 })),
    h('button', { type: 'submit' }, 'Send me a code'),
    registerError)
  register.addEventListener('submit', (event) => {
    event.preventDefault()
    const data = new FormData(register)
    const email = String(data.get('email'))
    bootstrap.auth.register({ email, username: String(data.get('username')), password: String(data.get('password')) })
      .then(() => showVerify(email))
      .catch((err: unknown) => { registerError.textContent = errorText(err) })
  })
  root.replaceChildren(h('section', { class: 'auth' }, signIn, register))
}

function showVerify (email: string): void {
  const error = h('p', { class: 'error', role: 'alert' })
  const form = h('form', { 'aria-labelledby': 'verify-title' },
    h('h2', { id: 'verify-title' }, 'Enter your code'),
    h('p', { class: 'hint' }, `A 6-digit code was mailed to ${email}. In development, without SMTP_URL, the server writes mail as .eml files to MAIL_CAPTURE_DIR (.data/mail by default).`),
    h('label', {}, 'Code', h('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', required: true })),
    h('button', { class: 'primary', type: 'submit' }, 'Verify and sign in'),
    error)
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    bootstrap.auth.verify(email, String(new FormData(form).get('code')))
      .then((res) => start(res.user))
      .catch((err: unknown) => { error.textContent = errorText(err) })
  })
  root.replaceChildren(h('section', { class: 'auth' }, form))
}

// ---- the chat -------------------------------------------------------------------

interface State {
  client: ParleyClient
  me: SelfUser
  conversations: Map<string, Conversation>
  messages: Map<string, Map<number, MessageView>>
  hasMore: Map<string, boolean>
  open: string | null
  online: Map<string, boolean>
  typing: Map<string, Map<string, number>>
  readBy: Map<string, Map<string, number>>
  /** Sent but not acknowledged yet (offline, or in flight), by clientMsgId. */
  pending: Map<string, { conversationId: string, text: string }>
}

let state: State | null = null

async function start (user: SelfUser): Promise<void> {
  const client = createClient({ baseUrl: '', mode: 'cookie', ...indexedDbStores(user.id), onSignedOut: () => { state = null; showAuth('Your session ended; sign in again.') } })
  const me = await client.auth.resume()
  if (!me) { showAuth(); return }
  state = { client, me, conversations: new Map(), messages: new Map(), hasMore: new Map(), open: null, online: new Map(), typing: new Map(), readBy: new Map(), pending: new Map() }
  const s = state
  who.replaceChildren(h('span', {}, `Signed in as ${me.displayName} (@${me.username})`), h('button', { onclick: () => { detach(client.auth.logout().finally(() => { state = null; showAuth() })) } }, 'Sign out'))

  client.realtime.on('state', ({ state: connectionState }) => {
    connection.hidden = connectionState === 'open'
    connection.textContent = connectionState === 'reconnecting' ? 'Reconnecting…' : connectionState === 'syncing' ? 'Catching up…' : connectionState === 'stopped' ? 'Offline' : 'Connecting…'
    connection.dataset.state = connectionState
  })
  client.realtime.on('message', ({ message }) => onMessage(s, message))
  client.realtime.on('typing', (event) => {
    if (event.userId === s.me.id) return
    let typers = s.typing.get(event.conversationId)
    if (!typers) s.typing.set(event.conversationId, typers = new Map())
    if (event.state === 'start') typers.set(event.userId, Date.parse(event.expiresAt))
    else typers.delete(event.userId)
    renderTyping(s)
    setTimeout(() => renderTyping(s), Math.max(0, Date.parse(event.expiresAt) - Date.now()) + 50)
  })
  client.realtime.on('presence', (event) => { s.online.set(event.userId, event.online); renderList(s); renderHeader(s) })
  client.realtime.on('read.updated', (event) => {
    let readers = s.readBy.get(event.conversationId)
    if (!readers) s.readBy.set(event.conversationId, readers = new Map())
    readers.set(event.userId, event.lastReadSeq)
    if (event.conversationId === s.open) renderMessages(s)
  })
  client.realtime.on('conversation.updated', () => { detach(loadConversations(s)) })
  client.realtime.on('conversation.removed', ({ conversationId }) => {
    s.conversations.delete(conversationId)
    if (s.open === conversationId) s.open = null
    renderLayout(s)
  })

  renderLayout(s)
  await loadConversations(s)
  await client.realtime.connect()
  await refreshPresence(s)
}

async function loadConversations (s: State): Promise<void> {
  const page = await s.client.conversations.list({ limit: 100 })
  const known = s.conversations.size
  for (const conversation of page.conversations) s.conversations.set(conversation.id, conversation)
  renderList(s)
  // New people to show presence of (someone started a conversation with us).
  if (s.conversations.size > known && s.client.realtime.connectionState === 'open') await refreshPresence(s)
}

async function refreshPresence (s: State): Promise<void> {
  const others = [...new Set([...s.conversations.values()].flatMap((c) => c.members.map((m) => m.id)).filter((id) => id !== s.me.id))].slice(0, 200)
  if (others.length === 0) return
  const { users } = await s.client.realtime.request('presence', { userIds: others }).catch(() => ({ users: [] }))
  for (const user of users) s.online.set(user.userId, user.online)
  renderList(s)
  renderHeader(s)
}

function otherMembers (s: State, conversation: Conversation): PublicUser[] {
  return conversation.members.filter((m) => m.id !== s.me.id)
}

function titleOf (s: State, conversation: Conversation): string {
  if (conversation.title) return conversation.title
  return otherMembers(s, conversation).map((m) => m.displayName).join(', ') || 'Just you'
}

function onMessage (s: State, message: MessageView): void {
  let byseq = s.messages.get(message.conversationId)
  if (!byseq) s.messages.set(message.conversationId, byseq = new Map())
  const isNew = !byseq.has(message.seq)
  byseq.set(message.seq, message)
  const conversation = s.conversations.get(message.conversationId)
  if (conversation && message.seq >= conversation.lastSeq) {
    conversation.lastSeq = message.seq
    conversation.lastActivityAt = message.createdAt
    conversation.lastMessage = { seq: message.seq, senderId: message.senderId, preview: message.deleted ? '' : (message.text ?? (message.attachments.length > 0 ? '[image]' : '')).slice(0, 100), createdAt: message.createdAt, deleted: message.deleted }
    if (isNew && message.senderId !== s.me.id && s.open !== message.conversationId) conversation.unreadCount++
  }
  if (!conversation) { detach(loadConversations(s)); return }
  // Whoever sent it stopped typing.
  s.typing.get(message.conversationId)?.delete(message.senderId)
  renderList(s)
  if (s.open === message.conversationId) {
    renderMessages(s)
    renderTyping(s)
    markRead(s)
  }
}

function markRead (s: State): void {
  const conversation = s.open ? s.conversations.get(s.open) : undefined
  if (!conversation || conversation.lastSeq <= conversation.lastReadSeq || document.visibilityState === 'hidden') return
  const previous = conversation.lastReadSeq
  conversation.lastReadSeq = conversation.lastSeq
  conversation.unreadCount = 0
  // Not connected: it is sent again with the next message or visit.
  s.client.realtime.request('read', { conversationId: conversation.id, seq: conversation.lastSeq }).catch(() => { conversation.lastReadSeq = previous })
  renderList(s)
}

// ---- rendering --------------------------------------------------------------------

function renderLayout (s: State): void {
  const search = h('form', { 'aria-label': 'Start a conversation' },
    h('label', {}, h('span', { class: 'visually-hidden' }, 'Usernames'), h('input', { name: 'usernames', placeholder: 'Username(s), comma-separated', required: true })),
    h('label', {}, h('span', { class: 'visually-hidden' }, 'Group title'), h('input', { name: 'title', placeholder: 'Group title (for several people)' })),
    h('button', { type: 'submit' }, 'Start conversation'),
    h('p', { class: 'error', role: 'alert', id: 'start-error' }))
  search.addEventListener('submit', (event) => {
    event.preventDefault()
    const data = new FormData(search)
    startConversation(s, String(data.get('usernames')), String(data.get('title') ?? ''))
      .then(() => search.reset())
      .catch((err: unknown) => { document.getElementById('start-error')!.textContent = errorText(err) })
  })
  const layout = h('div', { class: `layout${s.open ? ' open' : ''}` },
    h('nav', { class: 'sidebar', 'aria-label': 'Conversations' }, search, h('ul', { class: 'conversations', id: 'conversation-list' })),
    h('section', { class: 'chat', id: 'chat', 'aria-label': 'Conversation' }))
  root.replaceChildren(layout)
  renderList(s)
  renderChat(s)
}

async function startConversation (s: State, usernames: string, title: string): Promise<void> {
  const names = usernames.split(',').map((n) => n.trim().toLowerCase()).filter(Boolean)
  const ids: string[] = []
  for (const name of names) {
    const { users } = await s.client.users.search(name, { limit: 10 })
    const user = users.find((u) => u.username.toLowerCase() === name)
    if (!user) throw new Error(`No user called ${name}`)
    ids.push(user.id)
  }
  const conversation = ids.length === 1 && title === ''
    ? await s.client.conversations.create({ type: 'direct', userId: ids[0]! })
    : await s.client.conversations.create({ type: 'group', title: title || names.join(', '), memberIds: ids })
  s.conversations.set(conversation.id, conversation)
  await s.client.realtime.track(conversation.id, conversation.changeSeq)
  await openConversation(s, conversation.id)
  detach(refreshPresence(s))
}

function renderList (s: State): void {
  const list = document.getElementById('conversation-list')
  if (!list) return
  const sorted = [...s.conversations.values()].sort((a, b) => b.lastActivityAt.localeCompare(a.lastActivityAt))
  list.replaceChildren(...sorted.map((c) => {
    const others = otherMembers(s, c)
    const online = c.type === 'direct' && others[0] !== undefined && s.online.get(others[0].id) === true
    return h('li', {}, h('button', {
      'aria-current': s.open === c.id ? 'true' : undefined,
      'data-conversation': c.id,
      onclick: () => { detach(openConversation(s, c.id)) }
    },
    h('span', { class: 'name' }, c.type === 'direct' ? h('span', { class: `dot${online ? ' online' : ''}`, 'aria-label': online ? 'online' : 'offline', role: 'img' }) : null, titleOf(s, c)),
    h('span', { class: 'preview' }, c.lastMessage ? (c.lastMessage.deleted ? 'Message deleted' : c.lastMessage.preview) : 'No messages yet'),
    c.unreadCount > 0 ? h('span', { class: 'badge', 'aria-label': `${c.unreadCount} unread` }, String(c.unreadCount)) : null))
  }))
}

async function openConversation (s: State, id: string): Promise<void> {
  s.open = id
  document.querySelector('.layout')?.classList.add('open')
  if (!s.messages.has(id)) {
    const page = await s.client.messages.page(id, { limit: 50 })
    const byseq = new Map<number, MessageView>()
    for (const m of page.messages) byseq.set(m.seq, m)
    // Live changes that arrived meanwhile are newer than the page.
    for (const [seq, m] of s.messages.get(id) ?? []) byseq.set(seq, m)
    s.messages.set(id, byseq)
    s.hasMore.set(id, page.hasMore)
  }
  renderList(s)
  renderChat(s)
  markRead(s)
}

async function loadEarlier (s: State, id: string): Promise<void> {
  const byseq = s.messages.get(id)!
  const before = Math.min(...byseq.keys())
  const page = await s.client.messages.page(id, { before, limit: 50 })
  for (const m of page.messages) if (!byseq.has(m.seq)) byseq.set(m.seq, m)
  s.hasMore.set(id, page.hasMore)
  renderMessages(s, { keepScroll: true })
}

function renderChat (s: State): void {
  const chat = document.getElementById('chat')
  if (!chat) return
  const conversation = s.open ? s.conversations.get(s.open) : undefined
  if (!conversation) {
    chat.replaceChildren(h('p', { class: 'empty' }, 'Choose a conversation, or start one.'))
    return
  }
  const text = h('textarea', { name: 'text', 'aria-label': 'Message', placeholder: 'Write a message', rows: 1 })
  const file = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp,image/gif', 'aria-label': 'Attach an image' })
  const composer = h('form', { class: 'composer' }, text, file, h('button', { class: 'primary', type: 'submit' }, 'Send'))
  text.addEventListener('input', () => { if (text.value !== '') s.client.realtime.typing(conversation.id) })
  text.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) { event.preventDefault(); composer.requestSubmit() }
  })
  composer.addEventListener('submit', (event) => {
    event.preventDefault()
    const body = text.value.trim()
    const image = file.files?.[0]
    if (body === '' && !image) return
    text.value = ''
    file.value = ''
    s.client.realtime.typing(conversation.id, 'stop')
    const clientMsgId = crypto.randomUUID()
    s.pending.set(clientMsgId, { conversationId: conversation.id, text: body === '' ? '[image]' : body })
    renderMessages(s)
    ;(async () => {
      const attachments = image ? [(await s.client.media.upload(image, image.name)).id] : undefined
      await s.client.realtime.send({ conversationId: conversation.id, clientMsgId, text: body === '' ? undefined : body, attachments })
    })().catch((err: unknown) => { connection.hidden = false; connection.textContent = `Not sent: ${errorText(err)}` })
      .finally(() => { s.pending.delete(clientMsgId); renderMessages(s) })
  })
  chat.replaceChildren(
    h('header', {}, h('button', { class: 'back', onclick: () => { s.open = null; renderLayout(s) } }, '← Back'), h('h2', { id: 'chat-title' }), h('p', { id: 'chat-subtitle' })),
    h('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite', 'aria-labelledby': 'chat-title' }),
    h('p', { class: 'typing', id: 'typing', 'aria-live': 'polite' }),
    composer)
  renderHeader(s)
  renderMessages(s)
  renderTyping(s)
  text.focus()
}

function renderHeader (s: State): void {
  const conversation = s.open ? s.conversations.get(s.open) : undefined
  const title = document.getElementById('chat-title')
  const subtitle = document.getElementById('chat-subtitle')
  if (!conversation || !title || !subtitle) return
  title.textContent = titleOf(s, conversation)
  const others = otherMembers(s, conversation)
  subtitle.textContent = conversation.type === 'direct' && others[0] ? presenceText(s, others[0]) : `${conversation.members.length} members`
}

function presenceText (s: State, user: PublicUser): string {
  if (s.online.get(user.id) === true) return 'Online'
  return user.lastSeenAt ? `Last seen ${new Date(user.lastSeenAt).toLocaleString()}` : 'Offline'
}

function renderMessages (s: State, options: { keepScroll?: boolean } = {}): void {
  const list = document.getElementById('messages')
  const conversation = s.open ? s.conversations.get(s.open) : undefined
  if (!list || !conversation) return
  const byseq = s.messages.get(conversation.id) ?? new Map<number, MessageView>()
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  const previousHeight = list.scrollHeight
  const names = new Map(conversation.members.map((m) => [m.id, m.displayName]))
  const readers = s.readBy.get(conversation.id) ?? new Map<string, number>()
  const messages = [...byseq.values()].sort((a, b) => a.seq - b.seq)
  const lastMine = [...messages].reverse().find((m) => m.senderId === s.me.id)
  const seenBy = lastMine ? [...readers].filter(([userId, seq]) => userId !== s.me.id && seq >= lastMine.seq).map(([userId]) => names.get(userId) ?? 'someone') : []
  const items: HTMLElement[] = []
  if (s.hasMore.get(conversation.id)) items.push(h('li', {}, h('button', { onclick: () => { detach(loadEarlier(s, conversation.id)) } }, 'Load earlier messages')))
  for (const m of messages) {
    const mine = m.senderId === s.me.id
    const item = h('li', { class: `message${mine ? ' mine' : ''}${m.deleted ? ' deleted' : ''}`, 'data-seq': m.seq },
      h('div', { class: 'meta' }, `${mine ? 'You' : names.get(m.senderId) ?? 'Someone'} · ${new Date(m.createdAt).toLocaleTimeString()}${m.editedAt ? ' · edited' : ''}`),
      h('p', { class: 'text' }, m.deleted ? 'Message deleted' : m.text ?? ''),
      ...(m.deleted ? [] : m.attachments.map((a) => h('img', { src: a.url, alt: 'Attached image', loading: 'lazy' }))),
      m.reactions.length > 0 ? h('div', { class: 'reactions', 'aria-label': 'Reactions' }, m.reactions.map((r) => `${r.emoji} ${r.count}`).join('  ')) : null,
      m.deleted
        ? null
        : h('div', { class: 'actions' },
          h('button', { 'aria-label': 'React with thumbs up', onclick: () => { detach(s.client.realtime.request('react', { messageId: m.id, emoji: '👍', on: !m.reactions.some((r) => r.emoji === '👍' && r.userIds.includes(s.me.id)) })) } }, '👍'),
          mine ? h('button', { onclick: () => editMessage(s, m, item) }, 'Edit') : null,
          mine ? h('button', { onclick: () => { detach(s.client.realtime.request('delete', { messageId: m.id })) } }, 'Delete') : null),
      m === lastMine && seenBy.length > 0 ? h('div', { class: 'meta seen' }, `Seen by ${seenBy.join(', ')}`) : null)
    items.push(item)
  }
  const stored = new Set(messages.map((m) => m.clientMsgId))
  for (const [clientMsgId, pending] of s.pending) {
    if (pending.conversationId !== conversation.id || stored.has(clientMsgId)) continue
    items.push(h('li', { class: 'message mine pending' }, h('div', { class: 'meta' }, 'You · Sending…'), h('p', { class: 'text' }, pending.text)))
  }
  list.replaceChildren(...items)
  if (options.keepScroll) list.scrollTop = list.scrollHeight - previousHeight
  else if (atBottom || items.length <= 50) list.scrollTop = list.scrollHeight
}

function editMessage (s: State, message: MessageView, item: HTMLElement): void {
  const input = h('input', { value: message.text ?? '', 'aria-label': 'Edit message' })
  const form = h('form', {}, input, h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', onclick: () => renderMessages(s) }, 'Cancel'))
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    if (input.value.trim() !== '') detach(s.client.realtime.request('edit', { messageId: message.id, text: input.value.trim() }))
  })
  item.querySelector('.text')!.replaceWith(form)
  input.focus()
}

function renderTyping (s: State): void {
  const line = document.getElementById('typing')
  const conversation = s.open ? s.conversations.get(s.open) : undefined
  if (!line || !conversation) return
  const now = Date.now()
  const names = new Map(conversation.members.map((m) => [m.id, m.displayName]))
  const typers = [...(s.typing.get(conversation.id) ?? new Map<string, number>())].filter(([, until]) => until > now).map(([userId]) => names.get(userId) ?? 'Someone')
  line.textContent = typers.length === 0 ? '' : `${typers.join(', ')} ${typers.length === 1 ? 'is' : 'are'} typing…`
}

document.addEventListener('visibilitychange', () => { if (state) markRead(state) })

bootstrap.auth.resume()
  .then((user) => user ? start(user) : showAuth())
  .catch((err: unknown) => showAuth(`Could not reach the server: ${errorText(err)}`))
