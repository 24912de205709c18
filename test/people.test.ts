import t from 'tap'
import { build } from './helper.js'
import { createUser } from './accounts.js'
import { multipart } from './uploads.js'

// A real 1×1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII=', 'base64')
const GIF = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64')

t.test('profile: read and change display name and bio', async (t) => {
  const app = await build(t)
  const ada = await createUser(app, 'ada')
  const me = await app.inject({ url: '/api/users/me', headers: ada.auth })
  t.equal(me.statusCode, 200)
  t.equal(me.json().username, 'ada')
  const patched = await app.inject({ method: 'PATCH', url: '/api/users/me', headers: ada.auth, payload: { displayName: 'Ada Lovelace', bio: 'Analyst' } })
  t.equal(patched.statusCode, 200)
  t.match(patched.json(), { displayName: 'Ada Lovelace', bio: 'Analyst' })
  for (const payload of [{}, { displayName: '' }, { displayName: '   ' }, { bio: 'x'.repeat(501) }, { email: 'x@y.z' }, { displayName: { $set: 'x' } }]) {
    const res = await app.inject({ method: 'PATCH', url: '/api/users/me', headers: ada.auth, payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
  }
  t.equal((await app.inject({ url: '/api/users/me' })).statusCode, 401)
})

t.test('avatar: typed by magic bytes, size-limited, served safely, removable', async (t) => {
  const app = await build(t, { UPLOAD_MAX_BYTES: 2048 })
  const ada = await createUser(app)
  const bob = await createUser(app)

  const upload = await app.inject({ method: 'PUT', url: '/api/users/me/avatar', headers: { ...ada.auth, ...multipart('me.gif', 'text/plain', GIF).headers }, payload: multipart('me.gif', 'text/plain', GIF).payload })
  t.equal(upload.statusCode, 200)
  const avatarUrl = upload.json().avatarUrl as string
  t.match(avatarUrl, /^\/api\/media\/[0-9a-f]{24}$/)

  const served = await app.inject({ url: avatarUrl, headers: bob.auth })
  t.equal(served.statusCode, 200)
  t.equal(served.headers['content-type'], 'image/gif', 'the detected type, not the declared one')
  t.equal(served.headers['x-content-type-options'], 'nosniff')
  t.match(served.headers['content-security-policy'], /default-src 'none'/)
  t.match(served.headers['cache-control'], /max-age=\d+/)
  t.same(served.rawPayload, GIF)
  t.equal((await app.inject({ url: avatarUrl })).statusCode, 401, 'media needs a signed-in user')

  const html = Buffer.from('<html><script>alert(1)</script></html>')
  const fake = await app.inject({ method: 'PUT', url: '/api/users/me/avatar', headers: { ...ada.auth, ...multipart('x.png', 'image/png', html).headers }, payload: multipart('x.png', 'image/png', html).payload })
  t.equal(fake.statusCode, 415)
  t.equal(fake.json().code, 'UNSUPPORTED_IMAGE', 'a "PNG" that is really HTML is refused')

  const big = Buffer.concat([PNG, Buffer.alloc(4096)])
  const tooBig = await app.inject({ method: 'PUT', url: '/api/users/me/avatar', headers: { ...ada.auth, ...multipart('big.png', 'image/png', big).headers }, payload: multipart('big.png', 'image/png', big).payload })
  t.equal(tooBig.statusCode, 413)
  t.equal(tooBig.json().code, 'UPLOAD_TOO_LARGE')

  const json = await app.inject({ method: 'PUT', url: '/api/users/me/avatar', headers: ada.auth, payload: { file: 'x' } })
  t.equal(json.statusCode, 415)

  const png = await app.inject({ method: 'PUT', url: '/api/users/me/avatar', headers: { ...ada.auth, ...multipart('a.png', 'image/png', PNG).headers }, payload: multipart('a.png', 'image/png', PNG).payload })
  t.equal(png.statusCode, 200)
  t.equal((await app.inject({ url: avatarUrl, headers: bob.auth })).statusCode, 404, 'the replaced avatar is gone')

  const removed = await app.inject({ method: 'DELETE', url: '/api/users/me/avatar', headers: ada.auth })
  t.equal(removed.json().avatarUrl, null)
  t.equal((await app.inject({ url: png.json().avatarUrl, headers: bob.auth })).statusCode, 404)
})

t.test('directory: prefix search, case-insensitive, paginated, regex characters inert', async (t) => {
  const app = await build(t)
  const me = await createUser(app, 'searcher')
  for (const name of ['alice', 'Alicia', 'alfred', 'bob']) await createUser(app, name)
  await app.inject({ method: 'PATCH', url: '/api/users/me', headers: me.auth, payload: { displayName: 'Albert Searcher' } })

  const page1 = await app.inject({ url: '/api/users?q=AL&limit=2', headers: me.auth })
  t.equal(page1.statusCode, 200)
  const first = page1.json()
  t.same(first.users.map((u: { username: string }) => u.username), ['alfred', 'alice'])
  t.ok(first.nextCursor)
  const page2 = (await app.inject({ url: `/api/users?q=al&limit=2&cursor=${first.nextCursor}`, headers: me.auth })).json()
  t.same(page2.users.map((u: { username: string }) => u.username), ['Alicia', 'searcher'], 'display-name matches too')
  t.equal(page2.nextCursor, null)
  t.notOk('email' in first.users[0], 'no private fields')

  for (const q of ['.*', 'a.+', '(', '[', '\\']) {
    const res = await app.inject({ url: `/api/users?q=${encodeURIComponent(q)}`, headers: me.auth })
    t.equal(res.statusCode, 200, q)
    t.same(res.json().users, [], `${q} matches nothing`)
  }
  t.equal((await app.inject({ url: '/api/users?q=al&cursor=garbage!', headers: me.auth })).statusCode, 400)
  t.equal((await app.inject({ url: '/api/users?q=al&cursor=Z2FyYmFnZQ', headers: me.auth })).json().code, 'INVALID_CURSOR')
  t.equal((await app.inject({ url: '/api/users?q=al&limit=1000', headers: me.auth })).statusCode, 400)
  t.equal((await app.inject({ url: '/api/users?q[$ne]=x', headers: me.auth })).statusCode, 400)
})

t.test('public profile with last seen; unknown and invalid ids', async (t) => {
  const app = await build(t)
  const ada = await createUser(app)
  const bob = await createUser(app)
  const res = await app.inject({ url: `/api/users/${bob.id}`, headers: ada.auth })
  t.equal(res.statusCode, 200)
  t.same(Object.keys(res.json()).sort(), ['avatarUrl', 'bio', 'displayName', 'id', 'lastSeenAt', 'username'])
  t.equal((await app.inject({ url: '/api/users/000000000000000000000000', headers: ada.auth })).json().code, 'USER_NOT_FOUND')
  t.equal((await app.inject({ url: '/api/users/not-an-id', headers: ada.auth })).statusCode, 400)
})

t.test('last seen also follows HTTP use, recorded at most once a minute', async (t) => {
  const app = await build(t)
  const ada = await createUser(app)
  const bob = await createUser(app)
  t.equal((await app.inject({ url: `/api/users/${bob.id}`, headers: ada.auth })).json().lastSeenAt, null, 'never seen yet')
  const before = Date.now()
  t.equal((await app.inject({ url: '/api/conversations', headers: bob.auth })).statusCode, 200)
  let seen: string | null = null
  for (let i = 0; i < 50 && seen === null; i++) {
    seen = (await app.inject({ url: `/api/users/${bob.id}`, headers: ada.auth })).json().lastSeenAt
    if (seen === null) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(seen !== null && Date.parse(seen) >= before - 1000, 'an HTTP-only user has a last seen')
  await app.inject({ url: '/api/conversations', headers: bob.auth })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal((await app.inject({ url: `/api/users/${bob.id}`, headers: ada.auth })).json().lastSeenAt, seen, 'not rewritten within the minute')
})

t.test('blocking: no direct conversation and no messages to the blocker', async (t) => {
  const app = await build(t)
  const ada = await createUser(app)
  const bob = await createUser(app)
  const conv = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json()

  t.equal((await app.inject({ method: 'PUT', url: `/api/users/${bob.id}/block`, headers: ada.auth })).statusCode, 200)
  t.equal((await app.inject({ method: 'PUT', url: `/api/users/${bob.id}/block`, headers: ada.auth })).statusCode, 200, 'idempotent')
  const send = await app.inject({ method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: bob.auth, payload: { clientMsgId: 'm1', text: 'hi' } })
  t.equal(send.statusCode, 403)
  t.equal(send.json().code, 'BLOCKED')
  const create = await app.inject({ method: 'POST', url: '/api/conversations', headers: bob.auth, payload: { type: 'direct', userId: ada.id } })
  t.equal(create.json().code, 'BLOCKED')
  t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: ada.auth, payload: { clientMsgId: 'm2', text: 'still me' } })).statusCode, 201, 'the blocker can still write')

  t.equal((await app.inject({ method: 'PUT', url: `/api/users/${ada.id}/block`, headers: ada.auth })).json().code, 'CANNOT_BLOCK_SELF')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/users/${bob.id}/block`, headers: ada.auth })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: bob.auth, payload: { clientMsgId: 'm3', text: 'hi again' } })).statusCode, 201)
})

t.test('blocking: a blocked send that shares a turn with others stores nothing, and theirs stay gapless', async (t) => {
  const app = await build(t)
  const [ada, bob, cy] = [await createUser(app), await createUser(app), await createUser(app)]
  const conv = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json()
  const upload = multipart('a.png', 'image/png', PNG)
  const attachment = (await app.inject({ method: 'POST', url: '/api/media', headers: { ...bob.auth, ...upload.headers }, payload: upload.payload })).json()
  t.equal((await app.inject({ method: 'PUT', url: `/api/users/${bob.id}/block`, headers: ada.auth })).statusCode, 200)

  // Sent all at once, so that Bob's sends queue in the same turns as Ada's.
  const send = (user: typeof ada, clientMsgId: string, attachments?: string[]) =>
    app.inject({ method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: user.auth, payload: { clientMsgId, text: clientMsgId, ...(attachments ? { attachments } : {}) } })
  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => [send(ada, `a${i}`), send(bob, `b${i}`, i === 0 ? [attachment.id] : undefined)]).flat())
  const [adas, bobs] = [answers.filter((_, i) => i % 2 === 0), answers.filter((_, i) => i % 2 === 1)]
  t.same(adas.map((r) => r.statusCode), Array(10).fill(201), 'the blocker\'s sends are stored')
  t.same(bobs.map((r) => [r.statusCode, r.json().code]), Array(10).fill([403, 'BLOCKED']), 'every blocked send is refused')

  const history = (await app.inject({ url: `/api/conversations/${conv.id}/messages?limit=50`, headers: ada.auth })).json().messages as Array<{ seq: number, senderId: string }>
  t.same(history.map((m) => m.seq).sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i + 1), 'numbered 1…10, no gap left by the refused sends')
  t.ok(history.every((m) => m.senderId === ada.id), 'nothing of the blocked sender stored')
  // The refused send did not claim its attachment for the conversation: it can still go elsewhere.
  const elsewhere = (await app.inject({ method: 'POST', url: '/api/conversations', headers: bob.auth, payload: { type: 'direct', userId: cy.id } })).json()
  const sent = await app.inject({ method: 'POST', url: `/api/conversations/${elsewhere.id}/messages`, headers: bob.auth, payload: { clientMsgId: 'later', text: 'x', attachments: [attachment.id] } })
  t.equal(sent.statusCode, 201, 'the attachment was left unclaimed')
})
