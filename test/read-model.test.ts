// The Redis read model never shows a state the database does not hold: after
// every kind of write, and after Redis loses it all, what clients read equals
// what a read straight from MongoDB gives.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, redisKeys, twoInstances } from './helper.js'
import { createUser, directConversation, type TestUser } from './accounts.js'
import { MESSAGE_WINDOW } from '../services/read-model.js'

async function emptyReadModel (app: FastifyInstance): Promise<void> {
  // Key by key: on a cluster one DEL may not span slots.
  await Promise.all((await redisKeys(app, 'rm:*')).map((key) => app.redis.del(key)))
}

async function snapshot (app: FastifyInstance, user: TestUser, conversationId: string) {
  const list = (await app.inject({ url: '/api/conversations', headers: user.auth })).json()
  const page = (await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: user.auth })).json()
  const one = await app.inject({ url: `/api/conversations/${conversationId}`, headers: user.auth })
  // Last seen moves with every request (HTTP use counts): not part of the comparison.
  return JSON.parse(JSON.stringify({ list, page, one: one.statusCode === 200 ? one.json() : one.statusCode }), (key, value) => key === 'lastSeenAt' ? undefined : value)
}

/** What the read model shows equals what a rebuild from MongoDB shows. */
async function assertCoherent (t: Test, app: FastifyInstance, user: TestUser, conversationId: string, what: string): Promise<void> {
  const cached = await snapshot(app, user, conversationId)
  await emptyReadModel(app)
  const rebuilt = await snapshot(app, user, conversationId)
  t.same(cached, rebuilt, `${what}: the read model equals a rebuild from MongoDB`)
}

t.test('sends, edits, deletions, reactions, reads and mutes keep the read model true', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const send = (user: TestUser, clientMsgId: string, text: string) => app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: user.auth, payload: { clientMsgId, text } })
  for (let i = 1; i <= 5; i++) await send(i % 2 ? ada : bob, `m${i}`, `message ${i}`)
  await assertCoherent(t, app, bob, conversationId, 'after sends')

  const last = (await snapshot(app, bob, conversationId)).page.messages.at(-1)
  t.equal((await app.inject({ method: 'PATCH', url: `/api/messages/${last.id}`, headers: ada.auth, payload: { text: 'edited' } })).statusCode, 200)
  const seen = await snapshot(app, bob, conversationId)
  t.equal(seen.page.messages.at(-1).text, 'edited', 'the edit shows in the latest page')
  t.equal(seen.list.conversations[0].lastMessage.preview, 'edited', 'and in the list preview')
  await assertCoherent(t, app, bob, conversationId, 'after an edit')

  t.equal((await app.inject({ method: 'PUT', url: `/api/messages/${last.id}/reactions/${encodeURIComponent('👍')}`, headers: bob.auth })).statusCode, 200)
  t.equal((await snapshot(app, bob, conversationId)).page.messages.at(-1).reactions[0].count, 1)
  await assertCoherent(t, app, bob, conversationId, 'after a reaction')

  t.equal((await app.inject({ method: 'DELETE', url: `/api/messages/${last.id}`, headers: ada.auth })).statusCode, 200)
  const afterDelete = await snapshot(app, bob, conversationId)
  t.equal(afterDelete.page.messages.at(-1).deleted, true)
  t.equal(afterDelete.list.conversations[0].lastMessage.deleted, true)
  await assertCoherent(t, app, bob, conversationId, 'after a deletion')

  await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/read`, headers: bob.auth, payload: { seq: 5 } })
  await app.inject({ method: 'PUT', url: `/api/conversations/${conversationId}/mute`, headers: bob.auth, payload: { until: new Date(Date.now() + 3600_000).toISOString() } })
  const state = (await snapshot(app, bob, conversationId)).list.conversations[0]
  t.equal(state.lastReadSeq, 5)
  t.ok(state.mutedUntil)
  await assertCoherent(t, app, bob, conversationId, 'after read and mute')

  await app.inject({ method: 'PATCH', url: '/api/users/me', headers: ada.auth, payload: { displayName: 'Ada L.' } })
  t.ok((await snapshot(app, bob, conversationId)).list.conversations[0].members.some((m: { displayName: string }) => m.displayName === 'Ada L.'), 'a profile change shows in the list')
  await assertCoherent(t, app, bob, conversationId, 'after a profile change')
})

t.test('values decoded and kept by one instance follow what another instance writes', async (t) => {
  const [a, b] = await twoInstances(t)
  const [ada, bob] = [await createUser(a), await createUser(a)]
  const conversationId = await directConversation(a, ada, bob)
  const sent = await b.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'kept-1', text: 'first' } })
  t.equal(sent.statusCode, 201)
  const messageId = sent.json().id as string
  // Instance a decodes (and keeps) the profile, the conversation and the message twice.
  for (let i = 0; i < 2; i++) {
    const list = (await a.inject({ url: '/api/conversations', headers: bob.auth })).json()
    t.equal(list.conversations[0].lastMessage.preview, 'first')
    t.equal((await a.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json().messages[0].text, 'first')
  }
  t.equal((await b.inject({ method: 'PATCH', url: `/api/messages/${messageId}`, headers: ada.auth, payload: { text: 'second' } })).statusCode, 200)
  t.equal((await b.inject({ method: 'PATCH', url: '/api/users/me', headers: ada.auth, payload: { displayName: 'Ada on b' } })).statusCode, 200)
  t.equal((await b.inject({ method: 'PATCH', url: '/api/users/me', headers: bob.auth, payload: { displayName: 'Bob on b' } })).statusCode, 200)

  const list = (await a.inject({ url: '/api/conversations', headers: bob.auth })).json()
  t.equal(list.conversations[0].lastMessage.preview, 'second', 'the list preview on a shows the edit made on b')
  t.ok(list.conversations[0].members.some((m: { displayName: string }) => m.displayName === 'Ada on b'), 'and the new name')
  const page = (await a.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json()
  t.equal(page.messages[0].text, 'second', 'the page on a shows the edit')
  t.equal(page.messages[0].editedAt !== null, true)
  t.equal((await a.inject({ url: '/api/auth/me', headers: bob.auth })).json().displayName, 'Bob on b', '/me on a shows the rename')
  await assertCoherent(t, a, bob, conversationId, 'after writes on the other instance')
})

t.test('pages kept by one instance are served again while nothing changed, and follow every change another instance makes', async (t) => {
  const [a, b] = await twoInstances(t)
  const [ada, bob] = [await createUser(a), await createUser(a)]
  const conversationId = await directConversation(a, ada, bob)
  const send = (clientMsgId: string, text: string) => b.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId, text } })
  for (let i = 1; i <= 3; i++) t.equal((await send(`k${i}`, `kept ${i}`)).statusCode, 201)
  // Last seen moves with HTTP use (a profile change of its own): left out of the comparisons.
  const list = () => a.inject({ url: '/api/conversations', headers: bob.auth }).then((r) => JSON.parse(r.body, (key, value) => key === 'lastSeenAt' ? undefined : value))
  const page = () => a.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth }).then((r) => r.json())

  // The same inputs give the very same page object, which is then only serialised once.
  t.equal(await a.messages.history(conversationId, bob.id, { limit: 50 }), await a.messages.history(conversationId, bob.id, { limit: 50 }), 'a history page is kept')
  // The first list fills profiles from MongoDB: its profile objects are not the ones decoded from Redis after.
  await a.conversations.list(bob.id, 20)
  t.equal(await a.conversations.list(bob.id, 20), await a.conversations.list(bob.id, 20), 'a list page is kept')
  const [firstList, firstPage] = [await list(), await page()]
  t.same(await list(), firstList, 'a kept list answers the same')
  t.same(await page(), firstPage, 'a kept page answers the same')
  const messageId = firstPage.messages[1].id as string

  t.equal((await b.inject({ method: 'PUT', url: `/api/messages/${messageId}/reactions/${encodeURIComponent('🎉')}`, headers: bob.auth })).statusCode, 200)
  t.equal((await page()).messages[1].reactions[0]?.count, 1, 'a reaction made on b shows in the page kept on a')
  t.equal((await b.inject({ method: 'DELETE', url: `/api/messages/${messageId}`, headers: ada.auth })).statusCode, 200)
  t.equal((await page()).messages[1].deleted, true, 'and a deletion')
  t.equal((await send('k4', 'kept 4')).statusCode, 201)
  t.same((await page()).messages.map((m: { seq: number }) => m.seq), [1, 2, 3, 4], 'and a new message')
  t.same((await a.inject({ url: `/api/conversations/${conversationId}/messages?before=3&limit=2`, headers: bob.auth })).json().messages.map((m: { deleted: boolean }) => m.deleted), [false, true], 'an older page too')
  const listed = (await list()).conversations[0]
  t.same([listed.lastMessage.preview, listed.unreadCount], ['kept 4', 4], 'the list shows the new message and its unread count')

  t.equal((await b.inject({ method: 'POST', url: `/api/conversations/${conversationId}/read`, headers: bob.auth, payload: { seq: 3 } })).statusCode, 200)
  t.equal((await list()).conversations[0].unreadCount, 1, 'a read made on b shows in the list kept on a')
  // A mute ends with no write at all: the kept list may not outlive it.
  const until = Date.now() + 1500
  t.equal((await b.inject({ method: 'PUT', url: `/api/conversations/${conversationId}/mute`, headers: bob.auth, payload: { until: new Date(until).toISOString() } })).statusCode, 200)
  t.equal((await list()).conversations[0].mutedUntil, new Date(until).toISOString(), 'and a mute')
  await new Promise((resolve) => setTimeout(resolve, until - Date.now() + 50))
  t.equal((await list()).conversations[0].mutedUntil, null, 'a mute that ran out is gone from the kept list')
  await assertCoherent(t, a, bob, conversationId, 'after changes made on the other instance')

  const group = (await b.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'before', memberIds: [bob.id] } })).json().id as string
  const titles = async () => (await list()).conversations.map((c: { title: string | null }) => c.title)
  t.same(await titles(), ['before', null], 'a group made on b shows in the list kept on a')
  t.equal((await b.inject({ method: 'PATCH', url: `/api/conversations/${group}`, headers: ada.auth, payload: { title: 'after' } })).statusCode, 200)
  t.same(await titles(), ['after', null], 'and its new title')
  t.equal((await b.inject({ method: 'DELETE', url: `/api/conversations/${group}/members/${bob.id}`, headers: ada.auth })).statusCode, 200)
  t.same(await titles(), [null], 'and leaving it')
})

t.test('KEPT_PAGES_MB=0 keeps no pages and answers the same', async (t) => {
  const app = await build(t, { KEPT_PAGES_MB: 0 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  await app.messages.send(conversationId, ada.id, { clientMsgId: 'z1', text: 'not kept' })
  t.not(await app.messages.history(conversationId, bob.id, { limit: 50 }), await app.messages.history(conversationId, bob.id, { limit: 50 }), 'history pages are built each time')
  t.not(await app.conversations.list(bob.id, 20), await app.conversations.list(bob.id, 20), 'so are list pages')
  const page = (await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json()
  t.same(page.messages.map((m: { text: string }) => m.text), ['not kept'])
  t.equal((await app.inject({ url: '/api/conversations', headers: bob.auth })).json().conversations[0].lastMessage.preview, 'not kept')
})

t.test('membership changes: joining shows the group, leaving hides it at once', async (t) => {
  const app = await build(t)
  const [ada, bob, cy] = [await createUser(app), await createUser(app), await createUser(app)]
  // Lists are cached before the changes.
  for (const u of [ada, bob, cy]) await app.inject({ url: '/api/conversations', headers: u.auth })
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'g', memberIds: [bob.id] } })).json().id
  t.same((await app.inject({ url: '/api/conversations', headers: bob.auth })).json().conversations.map((c: { id: string }) => c.id), [group], 'a new member sees it')
  t.same((await app.inject({ url: '/api/conversations', headers: cy.auth })).json().conversations, [], 'others do not')

  await app.inject({ method: 'POST', url: `/api/conversations/${group}/members`, headers: ada.auth, payload: { userIds: [cy.id] } })
  t.same((await app.inject({ url: '/api/conversations', headers: cy.auth })).json().conversations.map((c: { id: string }) => c.id), [group], 'an added member sees it')
  await assertCoherent(t, app, cy, group, 'after an addition')

  t.equal((await app.inject({ method: 'DELETE', url: `/api/conversations/${group}/members/${bob.id}`, headers: ada.auth })).statusCode, 200)
  t.same((await app.inject({ url: '/api/conversations', headers: bob.auth })).json().conversations, [], 'a removed member no longer sees it')
  t.equal((await app.inject({ url: `/api/conversations/${group}/messages`, headers: bob.auth })).statusCode, 404, 'nor reads it')
  t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${group}/messages`, headers: bob.auth, payload: { clientMsgId: 'x', text: 'x' } })).statusCode, 404, 'nor writes to it')
  await assertCoherent(t, app, bob, group, 'after a removal')
})

t.test('the window of latest messages is bounded; older pages come from MongoDB', async (t) => {
  const app = await build(t, { SEND_RATE_LIMIT_MAX: 100000 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const total = MESSAGE_WINDOW + 30
  for (let i = 1; i <= total; i++) await app.messages.send(conversationId, ada.id, { clientMsgId: `w${i}`, text: `n${i}` })
  const fields = await app.redis.hlen(`rm:msgs:${conversationId}`)
  t.ok(fields <= MESSAGE_WINDOW, `${fields} messages cached ≤ ${MESSAGE_WINDOW}`)
  const old = (await app.inject({ url: `/api/conversations/${conversationId}/messages?before=21&limit=20`, headers: bob.auth })).json()
  t.same(old.messages.map((m: { seq: number }) => m.seq), Array.from({ length: 20 }, (_, i) => i + 1))
  const latest = (await app.inject({ url: `/api/conversations/${conversationId}/messages?limit=100`, headers: bob.auth })).json()
  t.same(latest.messages.map((m: { seq: number }) => m.seq), Array.from({ length: 100 }, (_, i) => total - 99 + i))
})

t.test('a write never loses to an older copy', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const stale = (await app.readModel.conversation(conversationId))!
  await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'new', text: 'newer' } })
  // A fill that read the document before the send lands after it.
  await app.readModel.putConversations([stale])
  t.equal((await app.readModel.conversation(conversationId))!.lastSeq, 1, 'the older copy was refused')
})

t.test('Redis restarted empty: everything is rebuilt from MongoDB, nothing lost', async (t) => {
  const { startRedis } = await import('../scripts/embedded.js')
  let redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await build(t, { REDIS_URL: redis.url })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  for (let i = 1; i <= 3; i++) await app.messages.send(conversationId, ada.id, { clientMsgId: `r${i}`, text: `r${i}` })
  await app.conversations.markRead(conversationId, bob.id, 2)
  const before = await snapshot(app, bob, conversationId)

  await redis.stop()
  redis = await startRedis({ port: redis.port })
  for (let i = 0; i < 100 && app.redis.status !== 'ready'; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  // Sessions were in Redis too: sign in again.
  const { sessionId } = await app.sessions.create(bob.id)
  const bob2 = { ...bob, auth: { authorization: `Bearer ${app.jwt.sign({ sub: bob.id, sid: sessionId, typ: 'access' })}` } }
  const after = await snapshot(app, bob2, conversationId)
  t.same(after, before, 'the same list, page and conversation')
  const sent = await app.messages.send(conversationId, ada.id, { clientMsgId: 'r4', text: 'r4' })
  t.equal(sent.message.seq, 4, 'numbering goes on without a gap')
})

t.test('the conversation document is written behind the sends: it catches up, and a copy rebuilt while it lags catches up from the messages', async (t) => {
  const app = await build(t, { SEND_RATE_LIMIT_MAX: 100000 })
  const [ada, bob, cy] = [await createUser(app), await createUser(app), await createUser(app)]
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'before', memberIds: [bob.id, cy.id] } })).json().id as string
  const { ObjectId } = await import('mongodb')
  const doc = () => app.mongo.db.collection('conversations').findOne({ _id: new ObjectId(group) })

  // Sends and an admin's changes interleave; each kind of write keeps the other's.
  const sends = Array.from({ length: 40 }, (_, i) => app.messages.send(group, i % 2 === 0 ? ada.id : bob.id, { clientMsgId: `wb${i}`, text: `m${i}` }))
  const rename = app.conversations.rename(group, ada.id, 'after')
  const removal = app.conversations.removeMember(group, ada.id, cy.id)
  await Promise.all([...sends, rename, removal])
  const live = (await app.readModel.conversation(group))!
  t.same([live.lastSeq, live.changeSeq, live.title, live.memberIds.length], [40, 40, 'after', 2], 'the copy has every write')

  for (let i = 0; i < 100 && (await doc())?.lastSeq !== 40; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  const written = (await doc())!
  t.same([written.lastSeq, written.changeSeq, written.title, written.memberIds.length, written.lastMessage.seq], [40, 40, 'after', 2, 40], 'the document caught up behind the requests')

  // A crash lost the last writes behind (the document says 30, and counts no one's sends), and Redis is emptied.
  await app.mongo.db.collection('conversations').updateOne({ _id: new ObjectId(group) }, { $set: { lastSeq: 30, changeSeq: 30, lastMessage: { ...written.lastMessage, seq: 30, preview: 'm29' }, lastSentSeq: {} } })
  await emptyReadModel(app)
  const listed = (await app.inject({ url: '/api/conversations', headers: bob.auth })).json().conversations[0]
  t.same([listed.lastSeq, listed.changeSeq, listed.lastMessage.seq, listed.lastMessage.preview, listed.title], [40, 40, 40, 'm39', 'after'], 'rebuilt from the messages, not from the lagging document')
  t.equal(listed.unreadCount, 0, 'bob sent the last message: read by him')
  const adas = (await app.inject({ url: '/api/conversations', headers: ada.auth })).json().conversations[0]
  t.same([adas.lastReadSeq, adas.unreadCount], [39, 1], 'ada sent message 39, which the document had not counted: read by her up to it')
  const next = await app.messages.send(group, ada.id, { clientMsgId: 'after-crash', text: 'n' })
  t.equal(next.message.seq, 41, 'numbering goes on without a gap')
  await assertCoherent(t, app, bob, group, 'after the catch-up')
})
