import t from 'tap'
import { build, twoInstances } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect, refusedWith, type Frame } from './ws-client.js'

const isEvent = (type: string, test: (data: any) => boolean = () => true) => (f: Frame) => f.type === type && test(f.data)

t.test('handshake: Bearer, cookie or single-use ticket; refused before upgrade otherwise', async (t) => {
  const app = await build(t, { CORS_ORIGINS: 'https://app.example' })
  const ada = await createUser(app)

  t.equal(await refusedWith(app, {}), 401, 'no credentials')
  t.equal(await refusedWith(app, { token: 'not.a.jwt' }), 401, 'bad token')
  t.equal(await refusedWith(app, { token: ada.accessToken, headers: { origin: 'https://evil.example' } }), 403, 'foreign Origin')
  t.equal(await refusedWith(app, { token: ada.refreshToken }), 401, 'a refresh token is no access token')

  const bearer = await connect(app, { token: ada.accessToken, headers: { origin: 'https://app.example' } })
  t.equal((await bearer.request('ping')).type, 'ack')
  await bearer.close()
  const cookie = await connect(app, { headers: { cookie: `access_token=${ada.accessToken}` } })
  t.equal((await cookie.request('ping')).type, 'ack')
  await cookie.close()

  const issued = await app.inject({ method: 'POST', url: '/api/ws/ticket', headers: ada.auth })
  t.equal(issued.statusCode, 201)
  const { ticket } = issued.json()
  const byTicket = await connect(app, { query: `?ticket=${ticket}`, headers: { origin: 'https://app.example' } })
  t.equal((await byTicket.request('ping')).type, 'ack')
  await byTicket.close()
  t.equal(await refusedWith(app, { query: `?ticket=${ticket}` }), 401, 'a ticket works once')
  t.equal(await refusedWith(app, { query: '?ticket=forged' }), 401)
})

t.test('send over the socket: acked with the stored message, delivered across instances to every device', async (t) => {
  const [one, two] = await twoInstances(t)
  const [ada, bob] = [await createUser(one), await createUser(one)]
  const conversationId = await directConversation(one, ada, bob)
  const adaPhone = await connect(one, { token: ada.accessToken })
  const adaLaptop = await connect(two, { token: ada.accessToken })
  const bobSocket = await connect(two, { token: bob.accessToken })

  const ack = await adaPhone.request('send', { conversationId, clientMsgId: 'ws-1', text: 'hello over ws' })
  t.equal(ack.type, 'ack')
  t.match(ack.data, { created: true, message: { seq: 1, text: 'hello over ws', senderId: ada.id } })

  for (const [name, socket] of [['bob', bobSocket], ['ada laptop', adaLaptop], ['ada phone', adaPhone]] as const) {
    const event = await socket.waitFor(isEvent('message.created'))
    t.same(event.data.message, ack.data.message, `${name} got it`)
  }

  const http = await one.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'ws-1', text: 'hello over ws' } })
  t.equal(http.statusCode, 200, 'the same send over HTTP finds the same message')
  t.same(http.json(), ack.data.message)

  const edited = await two.inject({ method: 'PATCH', url: `/api/messages/${ack.data.message.id}`, headers: ada.auth, payload: { text: 'edited over HTTP' } })
  t.equal(edited.statusCode, 200)
  const update = await bobSocket.waitFor(isEvent('message.updated'))
  t.equal(update.data.message.text, 'edited over HTTP', 'HTTP mutations emit the same events')

  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(bobSocket.frames.filter((f) => f.type === 'message.created').length, 1, 'each event once per socket')
  for (const s of [adaPhone, adaLaptop, bobSocket]) await s.close()
})

t.test('every request type, and membership enforced on each', async (t) => {
  const app = await build(t)
  const [ada, bob, eve] = [await createUser(app), await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const a = await connect(app, { token: ada.accessToken })
  const b = await connect(app, { token: bob.accessToken })
  const e = await connect(app, { token: eve.accessToken })

  const sentFrame = await a.request('send', { conversationId, clientMsgId: 'r1', text: 'one' })
  t.equal(sentFrame.type, 'ack', JSON.stringify(sentFrame))
  const sent = sentFrame.data.message
  const react = await b.request('react', { messageId: sent.id, emoji: '🎉', on: true })
  t.same(react.data.message.reactions, [{ emoji: '🎉', count: 1, userIds: [bob.id] }])
  await a.waitFor(isEvent('reaction.updated'))
  t.equal((await a.request('edit', { messageId: sent.id, text: 'uno' })).data.message.text, 'uno')
  t.same(await b.request('read', { conversationId, seq: 1 }).then((f) => f.data), { lastReadSeq: 1, unreadCount: 0 })
  t.match((await a.waitFor(isEvent('read.updated'))).data, { conversationId, userId: bob.id, lastReadSeq: 1 })
  t.equal((await a.request('delete', { messageId: sent.id })).data.message.deleted, true)
  await b.waitFor(isEvent('message.deleted'))

  const typing = await a.request('typing', { conversationId })
  t.same(typing.data, { sent: true })
  const typed = await b.waitFor(isEvent('typing'))
  t.equal(typed.data.userId, ada.id)
  t.equal(typed.data.state, 'start')
  const ttl = Date.parse(typed.data.expiresAt) - Date.now()
  t.ok(ttl > 3000 && ttl <= 5000, 'typing expires after a few seconds unless refreshed')
  t.same((await a.request('typing', { conversationId })).data, { sent: false }, 'typing is rate-limited')
  t.same((await a.request('typing', { conversationId, state: 'stop' })).data, { sent: true })
  t.equal(await app.redis.exists('typing'), 0)

  for (const [type, data] of [
    ['send', { conversationId, clientMsgId: 'x1', text: 'intruder' }],
    ['typing', { conversationId }],
    ['read', { conversationId, seq: 1 }],
    ['sync', { conversations: [{ conversationId, since: 0 }] }]
  ] as const) {
    const res = await e.request(type, data)
    t.equal(res.type, 'error', type)
    t.equal(res.code, 'CONVERSATION_NOT_FOUND')
  }
  t.equal((await e.request('edit', { messageId: sent.id, text: 'x' })).code, 'MESSAGE_NOT_FOUND')
  t.notOk(e.frames.some((f) => f.type.startsWith('message.') || f.type === 'typing'), 'no events reach a non-member')

  const presence = await a.request('presence', { userIds: [bob.id, eve.id] })
  t.same(presence.data.users.map((u: { userId: string, online: boolean }) => [u.userId, u.online]), [[bob.id, true]], 'presence of contacts only')
  for (const s of [a, b, e]) await s.close()
})

t.test('bad frames get an error, never a crash; oversized frames close with 1009', async (t) => {
  const app = await build(t)
  const ada = await createUser(app)
  const s = await connect(app, { token: ada.accessToken })
  s.socket.send('not json')
  t.equal((await s.waitFor((f) => f.type === 'error')).code, 'BAD_FRAME')
  s.socket.send(JSON.stringify({ type: 'send', ref: 'b1', data: { conversationId: { $ne: null }, clientMsgId: 'x' } }))
  t.equal((await s.waitFor((f) => f.ref === 'b1')).code, 'VALIDATION_ERROR')
  s.socket.send(JSON.stringify({ type: 'launch', ref: 'b2' }))
  t.equal((await s.waitFor((f) => f.ref === 'b2')).code, 'UNKNOWN_TYPE')
  s.socket.send(JSON.stringify({ type: 'ping', ref: 'b3', data: {}, extra: 1 }))
  t.equal((await s.waitFor((f) => f.type === 'error' && f.ref === null && s.frames.filter((x) => x.code === 'BAD_FRAME').length === 2)).code, 'BAD_FRAME')
  s.socket.send(Buffer.from([1, 2, 3]), { binary: true })
  await s.waitFor((f) => f.type === 'error' && s.frames.filter((x) => x.code === 'BAD_FRAME').length === 3)
  s.socket.send(JSON.stringify([1, 2]))
  await s.waitFor(() => s.frames.filter((x) => x.code === 'BAD_FRAME').length === 4)
  t.equal((await s.request('ping')).type, 'ack', 'still serving')

  s.socket.send(JSON.stringify({ type: 'ping', data: { pad: 'x'.repeat(70 * 1024) } }))
  t.equal((await s.closed).code, 1009)
})

t.test('per-connection rate limit: errors first, then close 1008', async (t) => {
  const app = await build(t, { WS_RATE_PER_SECOND: 1, WS_RATE_BURST: 3 })
  const ada = await createUser(app)
  const s = await connect(app, { token: ada.accessToken })
  for (let i = 0; i < 5; i++) s.socket.send(JSON.stringify({ type: 'ping', ref: `p${i}` }))
  await s.waitFor((f) => f.code === 'RATE_LIMITED')
  t.ok(s.frames.filter((f) => f.type === 'ack').length <= 3)
  for (let i = 0; i < 10; i++) s.socket.send(JSON.stringify({ type: 'ping' }))
  t.equal((await s.closed).code, 1008)
})

t.test('per-user connection cap', async (t) => {
  const app = await build(t, { WS_MAX_CONNECTIONS_PER_USER: 2 })
  const ada = await createUser(app)
  const first = await connect(app, { token: ada.accessToken })
  const second = await connect(app, { token: ada.accessToken })
  t.equal(await refusedWith(app, { token: ada.accessToken }), 429)
  await first.close()
  await second.close()
})

t.test('logout, session revocation and password reset close the session\'s sockets, on every instance', async (t) => {
  const [one, two] = await twoInstances(t)
  const ada = await createUser(one)
  const other = (await one.inject({ method: 'POST', url: '/api/auth/login', payload: { login: ada.email, password: ada.password } })).json().accessToken as string
  const mine = await connect(two, { token: ada.accessToken })
  const otherDevice = await connect(two, { token: other })

  t.equal((await one.inject({ method: 'POST', url: '/api/auth/logout', headers: ada.auth })).statusCode, 200)
  t.equal((await mine.closed).code, 4001)
  t.ok(mine.frames.some((f) => f.type === 'session.revoked'))
  t.equal((await otherDevice.request('ping')).type, 'ack', "other sessions' sockets stay open")

  await one.inject({ method: 'POST', url: '/api/auth/logout-all', headers: { authorization: `Bearer ${other}` } })
  t.equal((await otherDevice.closed).code, 4001)
})

t.test('removal from a group takes effect on open sockets at once', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'G', memberIds: [bob.id] } })).json()
  const b = await connect(app, { token: bob.accessToken })
  await app.inject({ method: 'DELETE', url: `/api/conversations/${group.id}/members/${bob.id}`, headers: ada.auth })
  t.equal((await b.waitFor(isEvent('conversation.removed'))).data.conversationId, group.id)
  t.equal((await b.request('send', { conversationId: group.id, clientMsgId: 'late', text: 'still here?' })).code, 'CONVERSATION_NOT_FOUND')
  await app.inject({ method: 'POST', url: `/api/conversations/${group.id}/messages`, headers: ada.auth, payload: { clientMsgId: 'after', text: 'secret' } })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.notOk(b.frames.some((f) => f.type === 'message.created'), 'no more messages reach them')
  await b.close()
})

t.test('shutdown closes sockets with 1012 so clients reconnect elsewhere', async (t) => {
  const app = await build(t)
  const ada = await createUser(app)
  const s = await connect(app, { token: ada.accessToken })
  await app.close()
  t.equal((await s.closed).code, 1012)
})

t.test('AsyncAPI 3 document of the protocol', async (t) => {
  const app = await build(t)
  const res = await app.inject('/docs/asyncapi.json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.asyncapi, '3.0.0')
  const names = Object.keys(doc.channels.ws.messages)
  for (const type of ['send', 'edit', 'delete', 'react', 'typing', 'read', 'sync', 'ping']) t.ok(names.includes(`request.${type}`), type)
  for (const type of ['message.created', 'message.updated', 'message.deleted', 'reaction.updated', 'typing', 'read.updated', 'presence', 'conversation.updated', 'session.revoked']) t.ok(names.includes(`event.${type}`), type)
  t.notMatch(JSON.stringify(doc), /"\$ref":"[A-Za-z]+#"/, 'every reference resolves inside the document')
})
