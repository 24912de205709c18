// What a hostile or careless client does: bursts, oversized catch-ups, frames
// that break the protocol, request floods. Each gets the documented answer.
import t from 'tap'
import { symbols } from 'pino'
import { build } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect } from './ws-client.js'
import { SYNC_MAX_BYTES, SYNC_MAX_CHANGES } from '../plugins/realtime.js'

t.test('a burst of 100 sends: every stored message is acked before the 1008 close, refusals echo their ref', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const s = await connect(app, { token: ada.accessToken })
  for (let i = 0; i < 100; i++) s.socket.send(JSON.stringify({ type: 'send', ref: `s${i}`, data: { conversationId, clientMsgId: `burst-${i}`, text: `m${i}` } }))
  const closed = await s.closed
  t.equal(closed.code, 1008, 'closed for abusing the rate limit')

  const stored = await app.messages.history(conversationId, ada.id, { limit: 100 })
  const acks = s.frames.filter((f) => f.type === 'ack')
  t.ok(stored.messages.length > 0, `${stored.messages.length} messages stored`)
  t.equal(acks.length, stored.messages.length, 'one ack per stored message, all before the close')
  t.same(acks.map((f) => f.data.message.seq).sort((a, b) => a - b), stored.messages.map((m) => m.seq))
  const limited = s.frames.filter((f) => f.code === 'RATE_LIMITED')
  t.ok(limited.length > 0)
  t.ok(limited.every((f) => typeof f.ref === 'string' && /^s\d+$/.test(f.ref)), 'RATE_LIMITED errors carry the refused request\'s ref')
  const answered = new Set([...acks, ...limited].map((f) => f.ref))
  t.equal(answered.size, acks.length + limited.length, 'no request answered twice')
})

t.test('sync is bounded: each conversation once, a cap on changes and bytes per ack', async (t) => {
  const app = await build(t, { MESSAGE_MAX_LENGTH: 4000, SEND_RATE_LIMIT_MAX: 100000 })
  const [ada, bob, cy] = [await createUser(app), await createUser(app), await createUser(app)]
  const one = await directConversation(app, ada, bob)
  const two = await directConversation(app, ada, cy)
  const text = 'y'.repeat(4000)
  for (const conversationId of [one, two]) {
    for (let i = 0; i < 300; i++) await app.messages.send(conversationId, ada.id, { clientMsgId: `c${i}`, text })
  }
  const s = await connect(app, { token: ada.accessToken })
  const twice = await s.request('sync', { conversations: Array.from({ length: 100 }, () => ({ conversationId: one, since: 0 })), limit: 500 })
  t.equal(twice.type, 'error')
  t.equal(twice.code, 'VALIDATION_ERROR', 'the same conversation twice is refused')

  const ack = await s.request('sync', { conversations: [{ conversationId: one, since: 0 }, { conversationId: two, since: 0 }], limit: 500 })
  t.equal(ack.type, 'ack')
  const pages = ack.data.conversations as Array<{ conversationId: string, changes: Array<{ changeSeq: number }>, cursor: number, hasMore: boolean }>
  const total = pages.reduce((n, p) => n + p.changes.length, 0)
  t.ok(total <= SYNC_MAX_CHANGES, `${total} changes ≤ ${SYNC_MAX_CHANGES}`)
  t.ok(JSON.stringify(ack).length <= SYNC_MAX_BYTES + 64 * 1024, `ack of ${JSON.stringify(ack).length} bytes ≈ ≤ ${SYNC_MAX_BYTES}`)
  t.ok(pages.some((p) => p.hasMore), 'what did not fit says hasMore')

  // Paging on gets exactly everything, once.
  const got = new Map<string, Set<number>>([[one, new Set()], [two, new Set()]])
  let cursors = pages.map((p) => ({ conversationId: p.conversationId, since: p.cursor, more: p.hasMore }))
  for (const p of pages) for (const c of p.changes) got.get(p.conversationId)!.add(c.changeSeq)
  for (let round = 0; round < 20 && cursors.some((c) => c.more); round++) {
    const next = await s.request('sync', { conversations: cursors.filter((c) => c.more).map(({ conversationId, since }) => ({ conversationId, since })) })
    const nextPages = next.data.conversations as typeof pages
    for (const p of nextPages) for (const c of p.changes) got.get(p.conversationId)!.add(c.changeSeq)
    cursors = nextPages.map((p) => ({ conversationId: p.conversationId, since: p.cursor, more: p.hasMore }))
  }
  t.equal(got.get(one)!.size, 300)
  t.equal(got.get(two)!.size, 300)

  const http = await app.inject({ method: 'GET', url: `/api/conversations/${one}/changes?since=0&limit=500`, headers: ada.auth })
  t.equal(http.statusCode, 200)
  t.ok(http.body.length <= 1024 * 1024 + 64 * 1024, `HTTP /changes page of ${http.body.length} bytes is bounded too`)
  t.ok(http.json().hasMore)
  await s.close()
})

t.test('client faults on the socket are not logged as errors', async (t) => {
  const app = await build(t)
  const lines: Array<{ level: number, msg: string }> = []
  ;(app.log as unknown as Record<symbol, unknown>)[symbols.streamSym] = { write: (line: string) => { lines.push(JSON.parse(line)) } }
  app.log.level = 'debug'
  const ada = await createUser(app)
  const bad = await connect(app, { token: ada.accessToken })
  // A text frame that is not UTF-8: ws closes it with 1007.
  ;(bad.socket as unknown as { _sender: { sendFrame: (list: Buffer[], cb?: () => void) => void } })._sender.sendFrame([Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28])])
  t.equal((await bad.closed).code, 1007)
  const big = await connect(app, { token: ada.accessToken })
  big.socket.send('x'.repeat(70 * 1024))
  t.equal((await big.closed).code, 1009)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(lines.filter((l) => l.level >= 50).map((l) => l.msg), [], 'nothing at error level')
  t.ok(lines.some((l) => l.level === 20 && /client fault/.test(l.msg)), 'logged at debug')
})

t.test('per-user HTTP budgets: RATE_LIMIT_MAX holds on every signed-in route, expensive routes have their own', async (t) => {
  const app = await build(t, { RATE_LIMIT_MAX: 30, SEND_RATE_LIMIT_MAX: 5, SEARCH_RATE_LIMIT_MAX: 3 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const me = await Promise.all(Array.from({ length: 32 }, () => app.inject({ method: 'GET', url: '/api/users/me', headers: bob.auth })))
  const refused = me.filter((r) => r.statusCode === 429)
  t.equal(refused.length, 2, '30 pass, 2 refused')
  t.equal(refused[0]!.json().code, 'RATE_LIMITED')
  t.ok(Number(refused[0]!.headers['retry-after']) > 0, 'with retry-after')
  t.equal((await app.inject({ method: 'GET', url: '/api/users/me', headers: ada.auth })).statusCode, 200, 'another user has a budget of their own')

  const sends = []
  for (let i = 0; i < 7; i++) sends.push(await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: `rl-${i}`, text: 'hi' } }))
  t.same(sends.map((r) => r.statusCode), [201, 201, 201, 201, 201, 429, 429], 'sends draw on their own, tighter budget')
  const s = await connect(app, { token: ada.accessToken })
  const overSocket = await s.request('send', { conversationId, clientMsgId: 'rl-ws', text: 'hi' })
  t.equal(overSocket.code, 'RATE_LIMITED', 'the budget holds over the socket too')
  await s.close()

  const searches = []
  for (let i = 0; i < 4; i++) searches.push((await app.inject({ method: 'GET', url: '/api/users?q=u_', headers: ada.auth })).statusCode)
  t.same(searches, [200, 200, 200, 429], 'directory search has its own budget')
  t.equal((await app.inject({ method: 'GET', url: '/api/search/messages?q=hi', headers: ada.auth })).statusCode, 429, 'shared with message search')
})

t.test('two instances share the budgets', async (t) => {
  const { twoInstances } = await import('./helper.js')
  const [one, two] = await twoInstances(t, { RATE_LIMIT_MAX: 10 })
  const ada = await createUser(one)
  const statuses = []
  for (let i = 0; i < 12; i++) statuses.push((await (i % 2 ? one : two).inject({ method: 'GET', url: '/api/users/me', headers: ada.auth })).statusCode)
  t.equal(statuses.filter((s) => s === 429).length, 2)
})

t.test('every ack matches the data schema that AsyncAPI gives it', async (t) => {
  const { Ajv } = await import('ajv')
  const addFormats = (await import('ajv-formats')).default
  const app = await build(t)
  const doc = (await app.inject('/docs/asyncapi.json')).json()
  const ajv = new Ajv({ strict: false })
  addFormats.default(ajv)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const s = await connect(app, { token: ada.accessToken })
  const sent = await s.request('send', { conversationId, clientMsgId: 'typed', text: 'hello' })
  const messageId = sent.data.message.id
  const acks: Record<string, unknown> = {
    send: sent,
    edit: await s.request('edit', { messageId, text: 'edited' }),
    react: await s.request('react', { messageId, emoji: '👍', on: true }),
    typing: await s.request('typing', { conversationId }),
    read: await s.request('read', { conversationId, seq: 1 }),
    sync: await s.request('sync', { conversations: [{ conversationId, since: 0 }] }),
    presence: await s.request('presence', { userIds: [bob.id] }),
    ping: await s.request('ping'),
    delete: await s.request('delete', { messageId })
  }
  for (const [type, frame] of Object.entries(acks)) {
    const message = doc.channels.ws.messages[`ack.${type}`]
    t.ok(message, `ack.${type} is described`)
    const data = message.payload.properties.data
    t.not(JSON.stringify(data), '{}', `ack.${type} data is typed`)
    const validate = ajv.compile({ ...message.payload, components: doc.components })
    t.ok(validate(frame), `the ${type} ack matches its schema`, { errors: validate.errors })
  }
  await s.close()
})
