// Bots with API keys, and outgoing webhooks delivered to a real HTTP endpoint:
// signed, retried with the same event id, logged, disabled after persistent
// failure, and never sent to private addresses the server was not told to allow.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { build } from './helper.js'
import { createUser } from './accounts.js'
import { connect, listen, refusedWith } from './ws-client.js'
import { createClient, ParleyError } from '../client/index.js'

interface Delivery { headers: IncomingHttpHeaders, body: string, answered: number }

/** A webhook receiver: records every request and answers what the test scripts (200 by default). */
async function startReceiver (t: { teardown: (fn: () => unknown) => void }) {
  const deliveries: Delivery[] = []
  const script: number[] = []
  let always: number | undefined
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (c: Buffer) => chunks.push(c))
    request.on('end', () => {
      const status = script.shift() ?? always ?? 200
      deliveries.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), answered: status })
      response.writeHead(status, status === 302 ? { location: 'http://127.0.0.1:1/elsewhere' } : {}).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`
  const until = async (check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${deliveries.length} deliveries)`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  return { url, deliveries, until, answerNext: (...statuses: number[]) => script.push(...statuses), answerAlways: (status: number | undefined) => { always = status } }
}

t.test('bots: API keys (hashed, revocable) reach the same routes as people, only where the bot is a member', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const created = await app.inject({ method: 'POST', url: '/api/bots', headers: ada.auth, payload: { username: `helper_${ada.id.slice(-6)}`, displayName: 'Helper' } })
  t.equal(created.statusCode, 201)
  const { bot, apiKey } = created.json()
  t.match(apiKey, /^pk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
  t.equal(bot.user.bot, true)
  t.equal(bot.user.displayName, 'Helper')
  t.equal(bot.ownerId, ada.id)
  const stored = await app.mongo.db.collection('api_keys').findOne({ botId: bot.user.id })
  t.notOk(JSON.stringify(stored).includes(apiKey.slice(20)), 'only a hash of the secret is stored')
  const botAuth = { authorization: `Bearer ${apiKey}` }

  const me = await app.inject({ url: '/api/auth/me', headers: botAuth })
  t.equal(me.statusCode, 200)
  t.equal(me.json().id, bot.user.id)
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: bot.user.username, password: '!' } })).json().code, 'INVALID_CREDENTIALS', 'a bot has no password')

  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'ops', memberIds: [bob.id, bot.user.id] } })).json().id as string
  const elsewhere = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json().id as string
  const posted = await app.inject({ method: 'POST', url: `/api/conversations/${group}/messages`, headers: botAuth, payload: { clientMsgId: 'b1', text: 'deploy finished' } })
  t.equal(posted.statusCode, 201, 'a bot posts through the same route')
  t.equal((await app.inject({ url: `/api/conversations/${group}/messages`, headers: botAuth })).json().messages.length, 1, 'and reads')
  t.equal((await app.inject({ url: `/api/conversations/${elsewhere}/messages`, headers: botAuth })).json().code, 'CONVERSATION_NOT_FOUND', 'nowhere else')
  const members = (await app.inject({ url: `/api/conversations/${group}`, headers: bob.auth })).json().members
  t.equal(members.find((m: { id: string }) => m.id === bot.user.id).bot, true, 'members see it is a bot')

  // The SDK, signed in with the key: the same calls, no refresh.
  const baseUrl = (await listen(app)).replace(/^ws/, 'http').replace(/\/ws$/, '')
  const botClient = createClient({ baseUrl, apiKey })
  t.equal((await botClient.messages.send(group, { clientMsgId: 'sdk1', text: 'from the SDK' })).text, 'from the SDK')
  const adaClient = createClient({ baseUrl, refreshToken: ada.refreshToken })
  t.same((await adaClient.bots.list()).map((b) => b.user.id), [bot.user.id], 'the owner lists it through the SDK')

  // What belongs to people: refused to bots with one code.
  for (const [method, url] of [['GET', '/api/bots'], ['POST', '/api/ws/ticket'], ['GET', '/api/auth/sessions'], ['POST', '/api/auth/logout'], ['GET', '/api/users/me/export'], ['GET', '/api/push/subscriptions']] as const) {
    const res = await app.inject({ method, url, headers: botAuth })
    t.equal(res.json().code, 'NOT_FOR_BOTS', `${method} ${url}`)
  }
  t.equal(await refusedWith(app, { headers: botAuth }), 403, 'no WebSocket: bots hear through webhooks')

  // Someone else's bot does not exist for you.
  t.equal((await app.inject({ url: `/api/bots/${bot.user.id}`, headers: bob.auth })).json().code, 'BOT_NOT_FOUND')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/bots/${bot.user.id}`, headers: bob.auth })).json().code, 'BOT_NOT_FOUND')

  // Rotation: a second key, then the first revoked: refused from the next request.
  const second = (await app.inject({ method: 'POST', url: `/api/bots/${bot.user.id}/keys`, headers: ada.auth })).json()
  const secondAuth = { authorization: `Bearer ${second.apiKey}` }
  t.equal((await app.inject({ url: '/api/auth/me', headers: secondAuth })).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/bots/${bot.user.id}/keys/${bot.keys[0].id}`, headers: ada.auth })).statusCode, 204)
  t.equal((await app.inject({ url: '/api/auth/me', headers: botAuth })).json().code, 'INVALID_API_KEY', 'revoked at once')
  const refused = await botClient.auth.me().catch((err: unknown) => err)
  t.ok(refused instanceof ParleyError && refused.code === 'INVALID_API_KEY' && refused.status === 401, 'the SDK reports the revoked key')
  t.equal((await app.inject({ url: '/api/auth/me', headers: secondAuth })).statusCode, 200)
  const tampered = `${second.apiKey.slice(0, -1)}${second.apiKey.endsWith('A') ? 'B' : 'A'}`
  for (const key of [tampered, 'pk_0000000000000000_' + 'A'.repeat(43), 'pk_nonsense']) {
    t.equal((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${key}` } })).json().code, 'INVALID_API_KEY')
  }
  const listed = (await app.inject({ url: '/api/bots', headers: ada.auth })).json().bots
  t.equal(listed.length, 1)
  t.same(listed[0].keys.map((k: { id: string }) => k.id), [second.key.id])
  t.equal((await app.inject({ method: 'POST', url: '/api/bots', headers: ada.auth, payload: { username: bob.username } })).json().code, 'USERNAME_TAKEN')

  // Deleting the owner's account takes the bot with it; its messages stay, from "Deleted user".
  t.equal((await app.inject({ method: 'DELETE', url: '/api/users/me', headers: ada.auth, payload: { password: ada.password } })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/auth/me', headers: secondAuth })).json().code, 'INVALID_API_KEY', 'its keys end with it')
  const history = (await app.inject({ url: `/api/conversations/${group}/messages`, headers: bob.auth })).json().messages
  t.same(history.map((m: { text: string }) => m.text), ['deploy finished', 'from the SDK'])
  t.equal((await app.inject({ url: `/api/users/${bot.user.id}`, headers: bob.auth })).json().displayName, 'Deleted user')
})

t.test('webhooks: every stored message change POSTed, signed; retried with the same event id; logged; disabled after persistent failure', async (t) => {
  const receiver = await startReceiver(t)
  const app = await build(t, { OUTBOUND_ALLOWED_ADDRESSES: '127.0.0.1', WEBHOOK_ATTEMPTS: 3, WEBHOOK_BACKOFF_MS: 50, WEBHOOK_DISABLE_AFTER: 2 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'ops', memberIds: [bob.id] } })).json().id as string
  const hooksUrl = `/api/conversations/${group}/webhooks`

  t.equal((await app.inject({ method: 'POST', url: hooksUrl, headers: bob.auth, payload: { url: receiver.url } })).json().code, 'NOT_ADMIN')
  const created = await app.inject({ method: 'POST', url: hooksUrl, headers: ada.auth, payload: { url: receiver.url } })
  t.equal(created.statusCode, 201)
  const { webhook, secret } = created.json()
  t.same(webhook.events, ['message.created', 'message.updated', 'message.deleted', 'reaction.updated'])
  t.notOk(JSON.stringify((await app.inject({ url: hooksUrl, headers: ada.auth })).json()).includes(secret), 'the secret is shown once')

  const send = async (clientMsgId: string, text: string) => (await app.inject({ method: 'POST', url: `/api/conversations/${group}/messages`, headers: bob.auth, payload: { clientMsgId, text } })).json()
  receiver.answerNext(500) // the first delivery fails once
  const message = await send('w1', 'hello hooks')
  await app.inject({ method: 'PATCH', url: `/api/messages/${message.id}`, headers: bob.auth, payload: { text: 'hello hooks (edited)' } })
  await app.inject({ method: 'PUT', url: `/api/messages/${message.id}/reactions/${encodeURIComponent('👍')}`, headers: ada.auth })
  await app.inject({ method: 'DELETE', url: `/api/messages/${message.id}`, headers: bob.auth })
  await receiver.until(() => receiver.deliveries.filter((d) => d.answered === 200).length === 4, 'four events delivered')

  const ok = receiver.deliveries.filter((d) => d.answered === 200)
  t.same(ok.map((d) => d.headers['x-parley-event']).sort(), ['message.created', 'message.deleted', 'message.updated', 'reaction.updated'])
  for (const d of receiver.deliveries) {
    const timestamp = String(d.headers['x-parley-timestamp'])
    t.ok(Math.abs(Number(timestamp) - Date.now() / 1000) < 60, 'a current timestamp')
    t.equal(d.headers['x-parley-signature'], `v1=${createHmac('sha256', secret).update(`${timestamp}.${d.body}`).digest('hex')}`, 'HMAC-SHA256 over timestamp.body')
    t.equal(d.headers['content-type'], 'application/json')
    const event = JSON.parse(d.body)
    t.equal(event.id, d.headers['x-parley-event-id'])
    t.equal(event.id, `${group}.${event.data.message.changeSeq}`, 'the event id is the conversation and change number')
    t.equal(event.conversationId, group)
  }
  const created1 = receiver.deliveries.filter((d) => d.headers['x-parley-event'] === 'message.created')
  t.same(created1.map((d) => d.answered), [500, 200], 'the failed delivery was retried')
  t.equal(created1[0]!.headers['x-parley-event-id'], created1[1]!.headers['x-parley-event-id'], 'with the same event id')
  t.equal(JSON.parse(created1[1]!.body).data.message.text, 'hello hooks', 'the event as it was stored')
  t.equal(new Set(ok.map((d) => d.headers['x-parley-event-id'])).size, 4, 'each event delivered once')

  const log = (await app.inject({ url: `${hooksUrl}/${webhook.id}/deliveries`, headers: ada.auth })).json().deliveries
  t.equal(log.length, 5)
  t.same(log.filter((l: { ok: boolean }) => !l.ok).map((l: { status: number, attempt: number }) => [l.status, l.attempt]), [[500, 1]])

  // A redirect is a failure, not followed; persistent failure disables the webhook.
  receiver.deliveries.length = 0
  receiver.answerNext(302)
  receiver.answerAlways(500)
  await send('w2', 'two')
  // One event at a time: FerretDB 1.24 does not make concurrent $inc of one document atomic (MongoDB does).
  await receiver.until(() => receiver.deliveries.length >= 3, 'the first event\'s three attempts')
  await send('w3', 'three')
  await receiver.until(() => receiver.deliveries.length >= 6, 'two events × three attempts')
  const disabled = async () => (await app.inject({ url: hooksUrl, headers: ada.auth })).json().webhooks[0]
  let state = await disabled()
  for (let i = 0; i < 50 && state.enabled; i++) { await new Promise((resolve) => setTimeout(resolve, 100)); state = await disabled() }
  t.equal(state.enabled, false, 'disabled after two events failed every attempt')
  t.match(state.disabledReason, /2 events in a row failed/)
  t.equal(receiver.deliveries.length, 6)
  t.ok(receiver.deliveries.some((d) => d.answered === 302), 'the redirect was answered…')
  t.notOk(receiver.deliveries.some((d) => d.headers.host === '127.0.0.1:1'), '…and not followed')
  const redirectLog = (await app.inject({ url: `${hooksUrl}/${webhook.id}/deliveries`, headers: ada.auth })).json().deliveries
  t.ok(redirectLog.some((l: { error: string | null }) => l.error === 'redirects are not followed'))

  await send('w4', 'while disabled')
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(receiver.deliveries.length, 6, 'nothing is sent while disabled')
  receiver.answerAlways(undefined)
  const enabled = await app.inject({ method: 'PATCH', url: `${hooksUrl}/${webhook.id}`, headers: ada.auth, payload: { enabled: true, events: ['message.created'] } })
  t.same([enabled.json().enabled, enabled.json().failedEventsInARow, enabled.json().events], [true, 0, ['message.created']])
  await send('w5', 'back')
  await receiver.until(() => receiver.deliveries.length === 7, 'delivery after re-enabling')
  t.equal(JSON.parse(receiver.deliveries[6]!.body).data.message.text, 'back')

  t.equal((await app.inject({ method: 'DELETE', url: `${hooksUrl}/${webhook.id}`, headers: ada.auth })).statusCode, 204)
  t.equal((await app.inject({ url: `${hooksUrl}/${webhook.id}/deliveries`, headers: ada.auth })).json().code, 'WEBHOOK_NOT_FOUND')
})

t.test('webhook targets: private addresses refused when set and when dialled; bad input is a 400 with nothing stored', async (t) => {
  const receiver = await startReceiver(t)
  const app = await build(t, { WEBHOOK_ATTEMPTS: 1 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const direct = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json().id as string
  const hooksUrl = `/api/conversations/${direct}/webhooks`
  const code = async (payload: Record<string, unknown>) => (await app.inject({ method: 'POST', url: hooksUrl, headers: bob.auth, payload })).json().code
  for (const url of [receiver.url, 'http://10.0.0.8/hook', 'http://169.254.169.254/latest/meta-data', 'http://[::1]/x', 'http://[fe80::1]/x', 'http://localhost:9/x', 'http://0.0.0.0/x', 'ftp://example.com/x', 'not a url']) {
    t.equal(await code({ url }), 'TARGET_NOT_ALLOWED', url)
  }
  t.equal(await code({ url: { $ne: null } }), 'VALIDATION_ERROR')
  t.equal(await code({ url: 'https://example.com/x', events: ['typing'] }), 'VALIDATION_ERROR')
  t.equal(await app.webhooks.collection.countDocuments(), 0)

  // A name that resolved to a public address when set, and dials a private
  // one later (DNS rebinding), is refused when the connection is opened.
  const now = new Date()
  await app.webhooks.collection.insertOne({ _id: new (await import('mongodb')).ObjectId(), conversationId: direct, url: receiver.url, events: ['message.created'], secret: 'whsec_x', enabled: true, disabledReason: null, failedEventsInARow: 0, createdBy: ada.id, createdAt: now })
  const hookId = (await app.webhooks.collection.findOne({ conversationId: direct }))!._id.toHexString()
  await app.inject({ method: 'POST', url: `/api/conversations/${direct}/messages`, headers: ada.auth, payload: { clientMsgId: 'x1', text: 'to a private address' } })
  let log: Array<{ ok: boolean, error: string }> = []
  for (let i = 0; i < 100 && log.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    log = (await app.inject({ url: `${hooksUrl}/${hookId}/deliveries`, headers: ada.auth })).json().deliveries
  }
  t.equal(log[0]?.ok, false)
  t.match(log[0]?.error, /not allowed/, 'refused by the connection filter')
  t.equal(receiver.deliveries.length, 0, 'the private address received nothing')
  const socket = await connect(app, { token: ada.accessToken })
  await socket.close()
})
