import t from 'tap'
import { build } from './helper.js'
import { createUser, type TestUser } from './accounts.js'
import type { FastifyInstance } from 'fastify'

const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII=', 'base64')

async function setup (t: Parameters<typeof build>[0], overrides = {}) {
  const app = await build(t, overrides)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conv = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json()
  return { app, ada, bob, conv }
}
const send = (app: FastifyInstance, user: TestUser, conversationId: string, payload: object) =>
  app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: user.auth, payload })

t.test('sending numbers messages 1, 2, 3 and is idempotent by clientMsgId', async (t) => {
  const { app, ada, bob, conv } = await setup(t)
  const seqs: number[] = []
  for (let i = 1; i <= 3; i++) {
    const res = await send(app, i % 2 ? ada : bob, conv.id, { clientMsgId: `m${i}`, text: `hello ${i}` })
    t.equal(res.statusCode, 201)
    seqs.push(res.json().seq)
  }
  t.same(seqs, [1, 2, 3])
  const first = (await app.inject({ url: `/api/conversations/${conv.id}/messages`, headers: ada.auth })).json().messages[0]

  const resend = await send(app, ada, conv.id, { clientMsgId: 'm1', text: 'hello 1' })
  t.equal(resend.statusCode, 200)
  t.same(resend.json(), first, 'the original message, unchanged')
  t.equal(await app.mongo.db.collection('messages').countDocuments(), 3, 'no second copy')
  const reused = await send(app, ada, conv.id, { clientMsgId: 'm1', text: 'something else' })
  t.equal(reused.statusCode, 409)
  t.equal(reused.json().code, 'CLIENT_MSG_ID_REUSED')
  t.equal((await send(app, bob, conv.id, { clientMsgId: 'm1', text: 'bob may use the same id' })).statusCode, 201, 'ids are per sender')
})

t.test('content limits, each with its own code', async (t) => {
  const { app, ada, conv } = await setup(t, { MESSAGE_MAX_LENGTH: 10, MESSAGE_MAX_ATTACHMENTS: 1 })
  const cases: Array<[object, number, string]> = [
    [{ clientMsgId: 'a' }, 400, 'EMPTY_MESSAGE'],
    [{ clientMsgId: 'b', text: '   ' }, 400, 'EMPTY_MESSAGE'],
    [{ clientMsgId: 'c', text: 'x'.repeat(11) }, 400, 'MESSAGE_TOO_LONG'],
    [{ clientMsgId: 'd', text: 'x', attachments: ['000000000000000000000001', '000000000000000000000002'] }, 400, 'TOO_MANY_ATTACHMENTS'],
    [{ clientMsgId: 'e', text: 'x', attachments: ['000000000000000000000001'] }, 404, 'MEDIA_NOT_FOUND'],
    [{ clientMsgId: 'bad id!', text: 'x' }, 400, 'VALIDATION_ERROR'],
    [{ text: 'no id' }, 400, 'VALIDATION_ERROR'],
    [{ clientMsgId: 'f', text: { $gt: '' } }, 400, 'VALIDATION_ERROR'],
    [{ clientMsgId: 'g', text: 5 }, 400, 'VALIDATION_ERROR']
  ]
  for (const [payload, status, code] of cases) {
    const res = await send(app, ada, conv.id, payload)
    t.equal(res.statusCode, status, JSON.stringify(payload))
    t.equal(res.json().code, code)
  }
  t.equal(await app.mongo.db.collection('messages').countDocuments(), 0, 'nothing half-written')
})

t.test('image attachments: uploaded, attached by the uploader only, visible to members only', async (t) => {
  const { app, ada, bob, conv } = await setup(t)
  const eve = await createUser(app)
  const boundary = 'b0undary'
  const payload = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`), PNG, Buffer.from(`\r\n--${boundary}--\r\n`)])
  const upload = await app.inject({ method: 'POST', url: '/api/media', headers: { ...ada.auth, 'content-type': `multipart/form-data; boundary=${boundary}` }, payload })
  t.equal(upload.statusCode, 201)
  const media = upload.json()
  t.equal(media.contentType, 'image/png')

  t.equal((await send(app, bob, conv.id, { clientMsgId: 'steal', attachments: [media.id] })).json().code, 'MEDIA_NOT_FOUND', "someone else's upload cannot be attached")
  const sent = await send(app, ada, conv.id, { clientMsgId: 'pic', attachments: [media.id] })
  t.equal(sent.statusCode, 201)
  t.same(sent.json().attachments, [media])
  t.equal(sent.json().text, null)
  t.equal((await app.inject({ url: media.url, headers: bob.auth })).statusCode, 200, 'members see it')
  t.equal((await app.inject({ url: media.url, headers: eve.auth })).statusCode, 404, 'others do not')
  const list = (await app.inject({ url: '/api/conversations', headers: bob.auth })).json()
  t.equal(list.conversations[0].lastMessage.preview, '[image]')
})

t.test('history by seq: latest page, before, after, limits', async (t) => {
  const { app, ada, conv } = await setup(t)
  for (let i = 1; i <= 7; i++) await send(app, ada, conv.id, { clientMsgId: `h${i}`, text: `m${i}` })
  const get = async (query: string) => (await app.inject({ url: `/api/conversations/${conv.id}/messages?${query}`, headers: ada.auth })).json()
  const seqs = (page: { messages: Array<{ seq: number }> }) => page.messages.map((m) => m.seq)
  t.same(seqs(await get('limit=3')), [5, 6, 7])
  t.equal((await get('limit=3')).hasMore, true)
  t.same(seqs(await get('before=5&limit=3')), [2, 3, 4])
  t.same(seqs(await get('before=3&limit=3')), [1, 2])
  t.equal((await get('before=3&limit=3')).hasMore, false)
  t.same(seqs(await get('after=2&limit=3')), [3, 4, 5])
  t.same(seqs(await get('after=5')), [6, 7])
  t.same(seqs(await get('')), [1, 2, 3, 4, 5, 6, 7], 'default page')
  for (const bad of ['limit=101', 'limit=0', 'before=x', 'after=-1', 'extra=1']) {
    t.equal((await app.inject({ url: `/api/conversations/${conv.id}/messages?${bad}`, headers: ada.auth })).statusCode, 400, bad)
  }
})

t.test('edit, delete (tombstone), reactions: sender rules and shapes', async (t) => {
  const { app, ada, bob, conv } = await setup(t)
  const msg = (await send(app, ada, conv.id, { clientMsgId: 'e1', text: 'typo' })).json()

  t.equal((await app.inject({ method: 'PATCH', url: `/api/messages/${msg.id}`, headers: bob.auth, payload: { text: 'hijack' } })).json().code, 'NOT_SENDER')
  const edited = await app.inject({ method: 'PATCH', url: `/api/messages/${msg.id}`, headers: ada.auth, payload: { text: 'fixed' } })
  t.equal(edited.json().text, 'fixed')
  t.ok(edited.json().editedAt)
  t.ok(edited.json().changeSeq > msg.changeSeq)

  const thumbs = encodeURIComponent('👍')
  const reacted = await app.inject({ method: 'PUT', url: `/api/messages/${msg.id}/reactions/${thumbs}`, headers: bob.auth })
  t.same(reacted.json().reactions, [{ emoji: '👍', count: 1, userIds: [bob.id] }])
  await app.inject({ method: 'PUT', url: `/api/messages/${msg.id}/reactions/${thumbs}`, headers: bob.auth })
  const both = await app.inject({ method: 'PUT', url: `/api/messages/${msg.id}/reactions/${thumbs}`, headers: ada.auth })
  t.same(both.json().reactions, [{ emoji: '👍', count: 2, userIds: [bob.id, ada.id] }], 'one reaction per user and emoji')
  const undone = await app.inject({ method: 'DELETE', url: `/api/messages/${msg.id}/reactions/${thumbs}`, headers: bob.auth })
  t.same(undone.json().reactions, [{ emoji: '👍', count: 1, userIds: [ada.id] }])
  t.equal((await app.inject({ method: 'PUT', url: `/api/messages/${msg.id}/reactions/abc`, headers: bob.auth })).statusCode, 400, 'only emoji')

  t.equal((await app.inject({ method: 'DELETE', url: `/api/messages/${msg.id}`, headers: bob.auth })).json().code, 'NOT_SENDER')
  const deleted = await app.inject({ method: 'DELETE', url: `/api/messages/${msg.id}`, headers: ada.auth })
  t.match(deleted.json(), { deleted: true, text: null, attachments: [], reactions: [] })
  const history = (await app.inject({ url: `/api/conversations/${conv.id}/messages`, headers: bob.auth })).json()
  t.match(history.messages[0], { seq: 1, deleted: true, text: null }, 'the tombstone stays in history')
  t.notMatch(JSON.stringify(history), /fixed|typo/, 'the text is gone from every response')
  t.equal((await app.inject({ method: 'PATCH', url: `/api/messages/${msg.id}`, headers: ada.auth, payload: { text: 'again' } })).json().code, 'MESSAGE_DELETED')
  t.equal((await app.inject({ method: 'PUT', url: `/api/messages/${msg.id}/reactions/${thumbs}`, headers: bob.auth })).json().code, 'MESSAGE_DELETED')
  const list = (await app.inject({ url: '/api/conversations', headers: bob.auth })).json()
  t.match(list.conversations[0].lastMessage, { deleted: true, preview: '' }, 'the preview follows')
  t.equal((await app.inject({ method: 'PATCH', url: '/api/messages/000000000000000000000000', headers: ada.auth, payload: { text: 'x' } })).json().code, 'MESSAGE_NOT_FOUND')
})

t.test('catch-up from a change cursor reproduces exactly the server state', async (t) => {
  const { app, ada, bob, conv } = await setup(t)
  const ids: string[] = []
  for (let i = 1; i <= 4; i++) ids.push((await send(app, ada, conv.id, { clientMsgId: `s${i}`, text: `v${i}` })).json().id)
  // The client has seen everything up to now.
  const cursor = (await app.inject({ url: `/api/conversations/${conv.id}`, headers: bob.auth })).json().changeSeq as number
  const client = new Map<number, unknown>(((await app.inject({ url: `/api/conversations/${conv.id}/messages`, headers: bob.auth })).json().messages as Array<{ seq: number }>).map((m) => [m.seq, m]))

  // Meanwhile: edits, a deletion, reactions and new messages.
  await app.inject({ method: 'PATCH', url: `/api/messages/${ids[1]}`, headers: ada.auth, payload: { text: 'v2 edited' } })
  await app.inject({ method: 'DELETE', url: `/api/messages/${ids[2]}`, headers: ada.auth })
  await app.inject({ method: 'PUT', url: `/api/messages/${ids[0]}/reactions/${encodeURIComponent('🎉')}`, headers: ada.auth })
  for (let i = 5; i <= 9; i++) await send(app, bob, conv.id, { clientMsgId: `s${i}`, text: `v${i}` })
  await app.inject({ method: 'PATCH', url: `/api/messages/${ids[1]}`, headers: ada.auth, payload: { text: 'v2 edited twice' } })

  let since = cursor
  let pages = 0
  for (;;) {
    const page = (await app.inject({ url: `/api/conversations/${conv.id}/changes?since=${since}&limit=3`, headers: bob.auth })).json()
    for (const m of page.changes) client.set(m.seq, m)
    since = page.cursor
    pages++
    if (!page.hasMore) break
  }
  t.ok(pages > 1, 'paginated')
  const server = (await app.inject({ url: `/api/conversations/${conv.id}/messages?limit=100`, headers: bob.auth })).json().messages as Array<{ seq: number }>
  t.same([...client.keys()].sort((a, b) => a - b), server.map((m) => m.seq))
  t.same(server.map((m) => client.get(m.seq)), server, 'exactly the server state')
  const empty = (await app.inject({ url: `/api/conversations/${conv.id}/changes?since=${since}`, headers: bob.auth })).json()
  t.same(empty.changes, [])
  t.equal(empty.cursor, since)
})

t.test('search: substring, case-insensitive, own conversations only, deleted excluded, input is no pattern', async (t) => {
  const { app, ada, bob, conv } = await setup(t)
  const eve = await createUser(app)
  const other = (await app.inject({ method: 'POST', url: '/api/conversations', headers: eve.auth, payload: { type: 'direct', userId: bob.id } })).json()
  await send(app, ada, conv.id, { clientMsgId: 'q1', text: 'The Analytical Engine (1837)' })
  const gone = (await send(app, ada, conv.id, { clientMsgId: 'q2', text: 'analytical notes, deleted' })).json()
  await app.inject({ method: 'DELETE', url: `/api/messages/${gone.id}`, headers: ada.auth })
  await send(app, eve, other.id, { clientMsgId: 'q3', text: 'analytical secrets of eve and bob' })

  const ada1 = (await app.inject({ url: '/api/search/messages?q=ANALYTICAL', headers: ada.auth })).json()
  t.same(ada1.messages.map((m: { text: string }) => m.text), ['The Analytical Engine (1837)'])
  const bob1 = (await app.inject({ url: '/api/search/messages?q=analytical', headers: bob.auth })).json()
  t.equal(bob1.messages.length, 2, 'bob is in both conversations')
  const scoped = (await app.inject({ url: `/api/search/messages?q=analytical&conversationId=${conv.id}`, headers: bob.auth })).json()
  t.equal(scoped.messages.length, 1)
  t.equal((await app.inject({ url: '/api/search/messages?q=(1837)', headers: ada.auth })).json().messages.length, 1, 'parentheses are literal')
  t.equal((await app.inject({ url: '/api/search/messages?q=.*', headers: ada.auth })).json().messages.length, 0, '.* is literal')
  t.equal((await app.inject({ url: '/api/search/messages?q=a', headers: ada.auth })).statusCode, 400, 'too short')
})

t.test('a sender that died half-way loses nothing and leaves no gap', async (t) => {
  const { app, ada, bob, conv } = await setup(t)
  const { messageIdFor } = await import('../services/messages.js')
  await send(app, ada, conv.id, { clientMsgId: 'ok-1', text: 'one' })
  const messages = app.mongo.db.collection('messages')

  // Ada's phone stored message 2, then died before recording it on the
  // conversation: neither the conversation document nor the read model know it.
  await messages.insertOne({ _id: messageIdFor(conv.id, 2), conversationId: conv.id, seq: 2, changeSeq: 2, senderId: ada.id, clientMsgId: 'died-after-insert', text: 'two', attachments: [], reactions: [], createdAt: new Date(), editedAt: null, deletedAt: null })

  const next = await send(app, bob, conv.id, { clientMsgId: 'fresh', text: 'three' })
  t.equal(next.statusCode, 201)
  t.equal(next.json().seq, 3, 'the taken seq is repaired past, not reused')
  t.equal(next.json().changeSeq, 3, 'and so is the change number')
  const resent = await send(app, ada, conv.id, { clientMsgId: 'died-after-insert', text: 'two' })
  t.equal(resent.statusCode, 200)
  t.equal(resent.json().seq, 2, 'a send that was stored is found on retry')
  const history = (await app.inject({ url: `/api/conversations/${conv.id}/messages`, headers: bob.auth })).json()
  t.same(history.messages.map((m: { seq: number, text: string }) => [m.seq, m.text]), [[1, 'one'], [2, 'two'], [3, 'three']], 'no gap, no duplicate')
  const listed = (await app.inject({ url: '/api/conversations', headers: bob.auth })).json().conversations[0]
  t.equal(listed.lastSeq, 3)
  t.equal(listed.lastMessage.preview, 'three')
})
