// A user's data: the JSON export, and erasing the account.
import t from 'tap'
import { build } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect } from './ws-client.js'
import { multipart } from './uploads.js'

const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==', 'base64')

t.test('GET /api/users/me/export: everything about the user, and only theirs', async (t) => {
  const app = await build(t)
  const [ada, bob, eve] = [await createUser(app), await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const upload = multipart('a.png', 'image/png', png)
  const avatar = await app.inject({ method: 'PUT', url: '/api/users/me/avatar', headers: { ...ada.auth, ...upload.headers }, payload: upload.payload })
  t.equal(avatar.statusCode, 200)
  const attachment = (await app.inject({ method: 'POST', url: '/api/media', headers: { ...ada.auth, ...upload.headers }, payload: upload.payload })).json()
  await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'a1', text: 'from ada', attachments: [attachment.id] } })
  await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: bob.auth, payload: { clientMsgId: 'b1', text: 'from bob' } })
  await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'a2', text: 'ada again' } })
  await app.inject({ method: 'PUT', url: `/api/users/${eve.id}/block`, headers: ada.auth })

  t.equal((await app.inject({ url: '/api/users/me/export' })).statusCode, 401)
  const res = await app.inject({ url: '/api/users/me/export', headers: ada.auth })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /application\/json/)
  t.equal(res.headers['content-disposition'], 'attachment; filename="parley-export.json"')
  const data = res.json()
  t.equal(data.profile.email, ada.email)
  t.equal(data.sessions.length, 1)
  t.same(data.blocked.map((b: { userId: string }) => b.userId), [eve.id])
  t.same(data.media.map((m: { kind: string }) => m.kind).sort(), ['attachment', 'avatar'])
  t.same(data.conversations.map((c: { id: string }) => c.id), [conversationId])
  t.same(data.messages.map((m: { text: string }) => m.text), ['from ada', 'ada again'], 'her messages, not Bob\'s, oldest first')
  t.equal(data.messages[0].attachments[0].id, attachment.id)
})

t.test('DELETE /api/users/me: password confirmed; sessions, sockets, profile and media gone; messages stay as "Deleted user"', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const upload = multipart('a.png', 'image/png', png)
  const attachment = (await app.inject({ method: 'POST', url: '/api/media', headers: { ...ada.auth, ...upload.headers }, payload: upload.payload })).json()
  await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'a1', text: 'hello bob', attachments: [attachment.id] } })
  const socket = await connect(app, { token: ada.accessToken })

  const refused = [
    [{}, 400, 'VALIDATION_ERROR'],
    [{ password: 'not her password' }, 403, 'WRONG_PASSWORD'],
    [{ password: { $ne: '' } }, 400, 'VALIDATION_ERROR']
  ] as const
  for (const [payload, status, code] of refused) {
    const res = await app.inject({ method: 'DELETE', url: '/api/users/me', headers: ada.auth, payload })
    t.equal(res.statusCode, status, JSON.stringify(payload))
    t.equal(res.json().code, code)
  }
  t.equal((await app.inject({ url: '/api/auth/me', headers: ada.auth })).statusCode, 200, 'nothing changed by a refused request')

  const erased = await app.inject({ method: 'DELETE', url: '/api/users/me', headers: ada.auth, payload: { password: ada.password } })
  t.equal(erased.statusCode, 200)
  t.ok([erased.headers['set-cookie']].flat().some((c) => /=;|Max-Age=0|Expires=Thu, 01 Jan 1970/.test(String(c))), 'cookies cleared')
  t.equal((await socket.closed).code, 4001, 'her socket is closed as signed out')
  t.equal((await app.inject({ url: '/api/auth/me', headers: ada.auth })).statusCode, 401, 'her token no longer works')
  for (const login of [ada.username, ada.email]) {
    const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login, password: ada.password } })
    t.equal(res.json().code, 'INVALID_CREDENTIALS', `no sign-in as ${login}`)
  }

  const profile = (await app.inject({ url: `/api/users/${ada.id}`, headers: bob.auth })).json()
  t.match(profile, { id: ada.id, displayName: 'Deleted user', bio: '', avatarUrl: null, lastSeenAt: null })
  t.notMatch(profile.username, ada.username)
  const history = (await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json().messages
  t.same(history.map((m: { text: string, senderId: string }) => [m.senderId, m.text]), [[ada.id, 'hello bob']], 'her messages stay in Bob\'s history')
  t.equal((await app.inject({ url: `/api/media/${attachment.id}`, headers: bob.auth })).statusCode, 404, 'her uploads are deleted')
  const found = (await app.inject({ url: `/api/users?q=${ada.username.slice(0, 4)}`, headers: bob.auth })).json().users
  t.notOk(found.some((u: { id: string }) => u.id === ada.id), 'not in the directory')
  const again = (await app.inject({ url: '/api/users?q=deleted', headers: bob.auth })).json().users
  t.notOk(again.some((u: { id: string }) => u.id === ada.id), 'not even as "Deleted user"')

  // Nothing that identifies her is left on the account itself.
  const raw = await app.mongo.db.collection('users').findOne({ _id: new (await import('mongodb')).ObjectId(ada.id) })
  const stored = JSON.stringify(raw)
  for (const trace of [ada.email, ada.username]) t.notOk(stored.toLowerCase().includes(trace.toLowerCase()), `no ${trace} in the stored account`)
  t.ok(raw?.deletedAt instanceof Date)

  // Her email and username can be used again.
  const register = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: ada.email, username: ada.username, password: 'a brand new passphrase 7' } })
  t.equal(register.statusCode, 202)
})
