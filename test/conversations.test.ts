import t from 'tap'
import { build } from './helper.js'
import { createUser, type TestUser } from './accounts.js'
import type { FastifyInstance } from 'fastify'

async function direct (app: FastifyInstance, a: TestUser, b: TestUser) {
  return app.inject({ method: 'POST', url: '/api/conversations', headers: a.auth, payload: { type: 'direct', userId: b.id } })
}
async function send (app: FastifyInstance, user: TestUser, conversationId: string, text: string, clientMsgId = `c${Math.random().toString(36).slice(2)}`) {
  return app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: user.auth, payload: { clientMsgId, text } })
}

t.test('direct conversations: one per pair, 201 then 200, from either side', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const first = await direct(app, ada, bob)
  t.equal(first.statusCode, 201)
  const body = first.json()
  t.equal(body.type, 'direct')
  t.same(body.members.map((m: { id: string }) => m.id).sort(), [ada.id, bob.id].sort())
  const again = await direct(app, ada, bob)
  t.equal(again.statusCode, 200)
  t.equal(again.json().id, body.id)
  const reverse = await direct(app, bob, ada)
  t.equal(reverse.statusCode, 200)
  t.equal(reverse.json().id, body.id)
  t.equal((await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: ada.id } })).json().code, 'CANNOT_MESSAGE_SELF')
  t.equal((await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: '000000000000000000000000' } })).json().code, 'USER_NOT_FOUND')
})

t.test('groups: creator is admin; admins rename and add; members leave; non-admins cannot', async (t) => {
  const app = await build(t)
  const [ada, bob, cy, dee] = [await createUser(app), await createUser(app), await createUser(app), await createUser(app)]
  const created = await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'Engines', memberIds: [bob.id, cy.id] } })
  t.equal(created.statusCode, 201)
  const group = created.json()
  t.same(group.adminIds, [ada.id])
  t.equal(group.members.length, 3)

  t.equal((await app.inject({ method: 'PATCH', url: `/api/conversations/${group.id}`, headers: bob.auth, payload: { title: 'Mine' } })).json().code, 'NOT_ADMIN')
  const renamed = await app.inject({ method: 'PATCH', url: `/api/conversations/${group.id}`, headers: ada.auth, payload: { title: 'Analytical Engines' } })
  t.equal(renamed.json().title, 'Analytical Engines')

  t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${group.id}/members`, headers: bob.auth, payload: { userIds: [dee.id] } })).statusCode, 403)
  const added = await app.inject({ method: 'POST', url: `/api/conversations/${group.id}/members`, headers: ada.auth, payload: { userIds: [dee.id] } })
  t.equal(added.json().members.length, 4)
  t.equal((await app.inject({ url: `/api/conversations/${group.id}`, headers: dee.auth })).statusCode, 200, 'the new member sees it')

  t.equal((await app.inject({ method: 'DELETE', url: `/api/conversations/${group.id}/members/${cy.id}`, headers: bob.auth })).json().code, 'NOT_ADMIN')
  const removed = await app.inject({ method: 'DELETE', url: `/api/conversations/${group.id}/members/${cy.id}`, headers: ada.auth })
  t.equal(removed.json().members.length, 3)
  t.equal((await app.inject({ url: `/api/conversations/${group.id}`, headers: cy.auth })).statusCode, 404, 'a removed member no longer sees it')
  t.equal((await send(app, cy, group.id, 'let me back')).statusCode, 404)

  const left = await app.inject({ method: 'DELETE', url: `/api/conversations/${group.id}/members/${bob.id}`, headers: bob.auth })
  t.equal(left.statusCode, 204)
  t.equal((await app.inject({ url: `/api/conversations/${group.id}`, headers: bob.auth })).statusCode, 404)

  const adminLeft = await app.inject({ method: 'DELETE', url: `/api/conversations/${group.id}/members/${ada.id}`, headers: ada.auth })
  t.equal(adminLeft.statusCode, 204)
  const after = await app.inject({ url: `/api/conversations/${group.id}`, headers: dee.auth })
  t.same(after.json().adminIds, [dee.id], 'the group is never left without an admin')

  const direct1 = (await direct(app, ada, bob)).json()
  t.equal((await app.inject({ method: 'PATCH', url: `/api/conversations/${direct1.id}`, headers: ada.auth, payload: { title: 'x' } })).json().code, 'NOT_A_GROUP')
})

t.test('group size limit', async (t) => {
  const app = await build(t, { GROUP_MAX_MEMBERS: 3 })
  const users = [await createUser(app), await createUser(app), await createUser(app), await createUser(app)]
  const res = await app.inject({ method: 'POST', url: '/api/conversations', headers: users[0]!.auth, payload: { type: 'group', title: 'Big', memberIds: users.slice(1).map((u) => u.id) } })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'GROUP_TOO_LARGE')
})

t.test('list: latest activity first, preview, unread counts, cursor pages', async (t) => {
  const app = await build(t)
  const [me, a, b, c] = [await createUser(app), await createUser(app), await createUser(app), await createUser(app)]
  const ids: string[] = []
  for (const other of [a, b, c]) ids.push((await direct(app, me, other)).json().id)
  await send(app, a, ids[0]!, 'from a 1')
  await send(app, a, ids[0]!, 'from a 2')
  await send(app, c, ids[2]!, 'from c')
  await send(app, me, ids[1]!, 'to b')

  const page = await app.inject({ url: '/api/conversations?limit=2', headers: me.auth })
  t.equal(page.statusCode, 200)
  const first = page.json()
  t.same(first.conversations.map((x: { id: string }) => x.id), [ids[1], ids[2]])
  t.equal(first.conversations[0].unreadCount, 0, 'your own message is read')
  t.equal(first.conversations[0].lastMessage.preview, 'to b')
  t.equal(first.conversations[1].unreadCount, 1)
  const second = (await app.inject({ url: `/api/conversations?limit=2&cursor=${first.nextCursor}`, headers: me.auth })).json()
  t.same(second.conversations.map((x: { id: string }) => x.id), [ids[0]])
  t.equal(second.conversations[0].unreadCount, 2)
  t.equal(second.nextCursor, null)

  const read = await app.inject({ method: 'POST', url: `/api/conversations/${ids[0]}/read`, headers: me.auth, payload: { seq: 1 } })
  t.same(read.json(), { lastReadSeq: 1, unreadCount: 1 })
  const backwards = await app.inject({ method: 'POST', url: `/api/conversations/${ids[0]}/read`, headers: me.auth, payload: { seq: 0 } })
  t.same(backwards.json(), { lastReadSeq: 1, unreadCount: 1 }, 'never moves backwards')
  const beyond = await app.inject({ method: 'POST', url: `/api/conversations/${ids[0]}/read`, headers: me.auth, payload: { seq: 99 } })
  t.same(beyond.json(), { lastReadSeq: 2, unreadCount: 0 }, 'clamped to the last message')
  t.equal((await app.inject({ url: '/api/conversations?cursor=bm90IGpzb24', headers: me.auth })).json().code, 'INVALID_CURSOR')
})

t.test('mute', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conv = (await direct(app, ada, bob)).json()
  const until = new Date(Date.now() + 3600_000).toISOString()
  const muted = await app.inject({ method: 'PUT', url: `/api/conversations/${conv.id}/mute`, headers: ada.auth, payload: { until } })
  t.equal(muted.json().mutedUntil, until)
  t.equal((await app.inject({ url: `/api/conversations/${conv.id}`, headers: bob.auth })).json().mutedUntil, null, 'per member')
  const unmuted = await app.inject({ method: 'PUT', url: `/api/conversations/${conv.id}/mute`, headers: ada.auth, payload: { until: null } })
  t.equal(unmuted.json().mutedUntil, null)
  t.equal((await app.inject({ method: 'PUT', url: `/api/conversations/${conv.id}/mute`, headers: ada.auth, payload: { until: 'tomorrow' } })).statusCode, 400)
})

t.test('to a non-member a conversation does not exist, on every route', async (t) => {
  const app = await build(t)
  const [ada, bob, eve] = [await createUser(app), await createUser(app), await createUser(app)]
  const conv = (await direct(app, ada, bob)).json()
  const msg = (await send(app, ada, conv.id, 'private')).json()
  const routes: Array<[string, string, object?]> = [
    ['GET', `/api/conversations/${conv.id}`],
    ['GET', `/api/conversations/${conv.id}/messages`],
    ['GET', `/api/conversations/${conv.id}/changes?since=0`],
    ['POST', `/api/conversations/${conv.id}/messages`, { clientMsgId: 'x', text: 'intrude' }],
    ['POST', `/api/conversations/${conv.id}/read`, { seq: 1 }],
    ['PUT', `/api/conversations/${conv.id}/mute`, { until: null }],
    ['PATCH', `/api/conversations/${conv.id}`, { title: 'x' }],
    ['POST', `/api/conversations/${conv.id}/members`, { userIds: [eve.id] }],
    ['PATCH', `/api/messages/${msg.id}`, { text: 'x' }],
    ['DELETE', `/api/messages/${msg.id}`],
    ['PUT', `/api/messages/${msg.id}/reactions/${encodeURIComponent('👍')}`],
    ['GET', `/api/search/messages?q=private&conversationId=${conv.id}`]
  ]
  for (const [method, url, payload] of routes) {
    const res = await app.inject({ method: method as 'GET', url, headers: eve.auth, ...(payload ? { payload } : {}) })
    t.equal(res.statusCode, 404, `${method} ${url}`)
  }
  const search = await app.inject({ url: '/api/search/messages?q=private', headers: eve.auth })
  t.same(search.json().messages, [], 'search never reaches other people\'s conversations')
  t.equal((await app.inject({ url: '/api/conversations/nonsense', headers: eve.auth })).statusCode, 400)
})
