// Replies and threads: a reply quotes its parent (a tombstone once the parent
// is deleted) and joins the parent's thread; the thread's root counts its
// replies as a change of its own, so events and catch-up carry it.
import t from 'tap'
import { build } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect, type Frame } from './ws-client.js'

const isUpdateOf = (seq: number, count: number) => (f: Frame) => f.type === 'message.updated' && f.data.message.seq === seq && f.data.message.thread?.replyCount === count

t.test('replies, thread pages, counts, unread, events, catch-up and tombstones', async (t) => {
  const app = await build(t, { SEND_RATE_LIMIT_MAX: 100000 })
  const [ada, bob, eve] = [await createUser(app), await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const other = await directConversation(app, ada, eve)
  const send = async (user: typeof ada, clientMsgId: string, text: string, replyTo?: string, conversation = conversationId) =>
    app.inject({ method: 'POST', url: `/api/conversations/${conversation}/messages`, headers: user.auth, payload: { clientMsgId, text, ...(replyTo ? { replyTo } : {}) } })
  const adaSocket = await connect(app, { token: ada.accessToken })

  const root = (await send(ada, 'root', 'What shall we call it?')).json()
  t.equal(root.replyTo, null)
  t.equal(root.thread, null)

  const first = await send(bob, 'r1', 'Parley!', root.id)
  t.equal(first.statusCode, 201)
  t.match(first.json().replyTo, { id: root.id, seq: root.seq, rootSeq: root.seq, senderId: ada.id, preview: 'What shall we call it?', deleted: false })
  const rootUpdate = await adaSocket.waitFor(isUpdateOf(root.seq, 1))
  t.ok(rootUpdate.data.message.changeSeq > first.json().changeSeq, 'the root changed after the reply')

  // A reply to the reply (over the WebSocket) joins the same thread.
  const bobSocket = await connect(app, { token: bob.accessToken })
  const second = await bobSocket.request('send', { conversationId, clientMsgId: 'r2', text: 'or Chatter', replyTo: first.json().id })
  t.equal(second.type, 'ack')
  t.match(second.data.message.replyTo, { seq: first.json().seq, rootSeq: root.seq, preview: 'Parley!' })
  await adaSocket.waitFor(isUpdateOf(root.seq, 2))

  // A resend of a reply is the same message and changes no count.
  const resent = await send(bob, 'r1', 'Parley!', root.id)
  t.equal(resent.statusCode, 200)
  t.equal(resent.json().id, first.json().id)

  const page = (await app.inject({ url: `/api/conversations/${conversationId}/threads/${root.seq}`, headers: ada.auth })).json()
  t.equal(page.root.id, root.id)
  t.match(page.root.thread, { replyCount: 2, lastReplyAt: second.data.message.createdAt })
  t.same(page.replies.map((m: { text: string }) => m.text), ['Parley!', 'or Chatter'])
  t.equal(page.unreadCount, 2, 'two replies from Bob Ada has not read')
  t.equal(page.hasMore, false)
  const paged = (await app.inject({ url: `/api/conversations/${conversationId}/threads/${root.seq}?after=${first.json().seq}&limit=1`, headers: ada.auth })).json()
  t.same(paged.replies.map((m: { text: string }) => m.text), ['or Chatter'])

  const read = await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/threads/${root.seq}/read`, headers: ada.auth, payload: { seq: first.json().seq } })
  t.same(read.json(), { lastReadSeq: first.json().seq, unreadCount: 1 })
  const back = await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/threads/${root.seq}/read`, headers: ada.auth, payload: { seq: 0 } })
  t.equal(back.json().lastReadSeq, first.json().seq, 'never moves backwards')
  t.equal((await app.inject({ url: `/api/conversations/${conversationId}/threads/${root.seq}`, headers: bob.auth })).json().unreadCount, 0, 'your own replies are never unread')

  // Replies are ordinary messages too: history and catch-up carry them, and the root's count.
  const history = (await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json().messages
  t.same(history.map((m: { seq: number, replyTo: { seq: number } | null }) => [m.seq, m.replyTo?.seq ?? null]), [[1, null], [2, 1], [3, 2]])
  const changes = (await app.inject({ url: `/api/conversations/${conversationId}/changes?since=0`, headers: bob.auth })).json().changes
  t.equal(changes.find((m: { seq: number }) => m.seq === root.seq).thread.replyCount, 2)

  // The root is deleted: the reply that quotes it shows a tombstone; the reply to the reply does not change.
  await app.inject({ method: 'DELETE', url: `/api/messages/${root.id}`, headers: ada.auth })
  const tombstoned = await bobSocket.waitFor((f) => f.type === 'message.updated' && f.data.message.id === first.json().id)
  t.match(tombstoned.data.message.replyTo, { id: root.id, preview: '', deleted: true })
  const after = (await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json().messages
  t.match(after[1].replyTo, { deleted: true, preview: '' })
  t.match(after[2].replyTo, { deleted: false, preview: 'Parley!' })
  const caughtUp = (await app.inject({ url: `/api/conversations/${conversationId}/changes?since=${tombstoned.data.message.changeSeq - 1}`, headers: bob.auth })).json().changes
  t.ok(caughtUp.some((m: { id: string, replyTo: { deleted: boolean } | null }) => m.id === first.json().id && m.replyTo?.deleted), 'catch-up carries the tombstone')

  // Refused: a reply to another conversation's message, to nothing, a thread of a reply, someone else's thread.
  const foreign = (await send(ada, 'x1', 'hi eve', undefined, other)).json()
  const cases = [
    [await send(ada, 'bad1', 'cross', foreign.id), 400, 'REPLY_TARGET_NOT_FOUND'],
    [await send(ada, 'bad2', 'ghost', '0123456789abcdef01234567'), 400, 'REPLY_TARGET_NOT_FOUND'],
    [await send(ada, 'bad3', 'op', { $ne: null } as unknown as string), 400, 'VALIDATION_ERROR'],
    [await app.inject({ url: `/api/conversations/${conversationId}/threads/${first.json().seq}`, headers: ada.auth }), 404, 'THREAD_NOT_FOUND'],
    [await app.inject({ url: `/api/conversations/${conversationId}/threads/999`, headers: ada.auth }), 404, 'THREAD_NOT_FOUND'],
    [await app.inject({ url: `/api/conversations/${conversationId}/threads/1`, headers: eve.auth }), 404, 'CONVERSATION_NOT_FOUND'],
    [await app.inject({ url: `/api/conversations/${conversationId}/threads/0`, headers: ada.auth }), 400, 'VALIDATION_ERROR']
  ] as const
  for (const [res, status, code] of cases) {
    t.equal(res.statusCode, status, code)
    t.equal(res.json().code, code)
  }
  await adaSocket.close()
  await bobSocket.close()
})

t.test('concurrent replies from two instances: the root counts every one', async (t) => {
  const app = await build(t, { SEND_RATE_LIMIT_MAX: 100000 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const root = (await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'root', text: 'go' } })).json()
  const N = 12
  const replies = await Promise.all(Array.from({ length: N }, (_, i) => app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: i % 2 ? ada.auth : bob.auth, payload: { clientMsgId: `c${i}`, text: `reply ${i}`, replyTo: root.id } })))
  t.ok(replies.every((r) => r.statusCode === 201))
  const page = (await app.inject({ url: `/api/conversations/${conversationId}/threads/${root.seq}?limit=100`, headers: ada.auth })).json()
  t.equal(page.root.thread.replyCount, N)
  t.equal(page.replies.length, N)
  t.same(page.replies.map((m: { seq: number }) => m.seq), [...page.replies.map((m: { seq: number }) => m.seq)].sort((a: number, b: number) => a - b))
})
