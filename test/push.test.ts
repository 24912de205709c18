// Web Push to offline devices, against a real HTTPS push service that checks
// the VAPID JWT and decrypts each payload with the device's keys.
import t from 'tap'
import { build } from './helper.js'
import { createUser, type TestUser } from './accounts.js'
import { connect } from './ws-client.js'
import { startPushService, type Device } from './push-service.js'
import { queuePrefix } from '../services/redis-client.js'

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('new messages reach offline devices: collapsed, muted unless mentioned, no blocked text, gone devices forgotten, retried once each', async (t) => {
  const pushService = await startPushService()
  t.teardown(pushService.close)
  const app = await build(t, { PUSH_COLLAPSE_MS: 300, OUTBOUND_ALLOWED_ADDRESSES: '127.0.0.1', OUTBOUND_CA_FILE: pushService.caFile })
  const [ada, bob, cy] = [await createUser(app), await createUser(app), await createUser(app)]
  const vapidPublicKey = (await app.inject({ url: '/api/push/config', headers: bob.auth })).json().vapidPublicKey as string
  t.match(vapidPublicKey, /^[A-Za-z0-9_-]{87}$/, 'a P-256 application server key, generated for development')

  const subscribe = async (user: TestUser, device: Device) => app.inject({ method: 'POST', url: '/api/push/subscriptions', headers: user.auth, payload: device.subscription })
  const phone = pushService.device()
  const laptop = pushService.device()
  const registered = await subscribe(bob, phone)
  t.equal(registered.statusCode, 201)
  t.equal(registered.json().endpointOrigin, pushService.origin, 'the endpoint itself is not shown back')
  t.equal((await subscribe(bob, laptop)).statusCode, 201)
  t.equal((await subscribe(bob, laptop)).statusCode, 201, 'registering a device again is not a second device')
  t.equal((await app.inject({ url: '/api/push/subscriptions', headers: bob.auth })).json().subscriptions.length, 2)

  const direct = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json().id as string
  const send = async (user: TestUser, conversationId: string, clientMsgId: string, text: string) =>
    (await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: user.auth, payload: { clientMsgId, text } })).json()

  // A burst of three: one notification per device, about the last, counting all three.
  await send(ada, direct, 'd1', 'one')
  await send(ada, direct, 'd2', 'two')
  const third = await send(ada, direct, 'd3', 'three')
  const burst = await pushService.waitFor(2)
  await settle(600)
  t.equal(pushService.received.length, 2, 'three messages, one push per device')
  t.same(new Set(burst.map((p) => p.device)), new Set([phone.id, laptop.id]))
  for (const push of burst) {
    t.same(push.payload, { type: 'message', conversationId: direct, seq: third.seq, title: ada.username, body: 'three', unreadCount: 3, mention: false }, 'decrypted with the device keys')
    t.equal(push.signedWith, vapidPublicKey, 'signed with the key devices subscribe with')
    t.equal(push.jwt.claims.sub, app.config.VAPID_SUBJECT)
    t.equal(push.headers.urgency, 'normal')
    t.match(push.headers.topic, /^[A-Za-z0-9_-]{1,32}$/, 'a Topic: the push service replaces an undelivered one')
    t.equal(push.headers.ttl, '86400')
  }

  // Online: nothing is pushed.
  const socket = await connect(app, { token: bob.accessToken })
  await send(ada, direct, 'd4', 'you are here')
  await settle(900)
  t.equal(pushService.received.length, 2, 'no push while a socket is open')
  await socket.close()
  await settle(300)

  // Read: nothing left to tell.
  await app.inject({ method: 'POST', url: `/api/conversations/${direct}/read`, headers: bob.auth, payload: { seq: 4 } })

  // Muted group: only a mention gets through, and it says so.
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'Team', memberIds: [bob.id, cy.id] } })).json().id as string
  await app.inject({ method: 'PUT', url: `/api/conversations/${group}/mute`, headers: bob.auth, payload: { until: new Date(Date.now() + 3600_000).toISOString() } })
  await send(ada, group, 'g1', 'muted chatter')
  await settle(900)
  t.equal(pushService.received.length, 2, 'muted: no push')
  const mention = await send(ada, group, 'g2', `@${bob.username} look`)
  await send(cy, group, 'g3', 'more chatter after the mention')
  const mentioned = (await pushService.waitFor(4)).slice(2)
  for (const push of mentioned) {
    t.same(push.payload, { type: 'message', conversationId: group, seq: mention.seq, title: 'Team', body: `@${bob.username} look`, unreadCount: 3, mention: true }, 'the mention, through the mute')
    t.equal(push.headers.urgency, 'high')
  }
  t.equal((await app.inject({ method: 'PUT', url: `/api/conversations/${group}/mute`, headers: bob.auth, payload: { until: null } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${group}/read`, headers: bob.auth, payload: { seq: 3 } })).statusCode, 200)

  // Blocked sender: the notification comes without their text.
  t.equal((await app.inject({ method: 'PUT', url: `/api/users/${cy.id}/block`, headers: bob.auth })).statusCode, 200)
  const blockedText = await send(cy, group, 'g4', 'text bob must not get')
  const fromBlocked = (await pushService.waitFor(6)).slice(4)
  for (const push of fromBlocked) t.same(push.payload, { type: 'message', conversationId: group, seq: blockedText.seq, title: 'Team', body: null, unreadCount: 1, mention: false })
  t.notOk(JSON.stringify(pushService.received).includes('text bob must not get'))
  await app.inject({ method: 'POST', url: `/api/conversations/${group}/read`, headers: bob.auth, payload: { seq: blockedText.seq } })

  // The laptop is gone (410) and the phone's push service fails once (500):
  // the laptop is forgotten, the phone gets the notification once, on the retry.
  pushService.answer(laptop.id, 410)
  pushService.answer(phone.id, 500)
  await send(ada, direct, 'd5', 'after the failures')
  const retried = (await pushService.waitFor(7, 20_000)).slice(6)
  await settle(600)
  t.equal(pushService.received.length, 7, 'one push: the phone, once')
  t.equal(retried[0]!.device, phone.id)
  const left = (await app.inject({ url: '/api/push/subscriptions', headers: bob.auth })).json().subscriptions
  t.equal(left.length, 1, 'the gone device was removed')
  t.same(pushService.rejected, [], 'every request carried a valid VAPID JWT and a payload that decrypts')

  // Unsubscribe: nothing more.
  t.equal((await app.inject({ method: 'DELETE', url: `/api/push/subscriptions/${left[0].id}`, headers: bob.auth })).statusCode, 204)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/push/subscriptions/${left[0].id}`, headers: bob.auth })).json().code, 'PUSH_SUBSCRIPTION_NOT_FOUND')
  const metrics = await app.metrics.registry.getSingleMetricAsString('parley_push_notifications_total')
  t.match(metrics, /result="sent"} 7/)
  t.match(metrics, /result="gone"} 1/)
})

t.test('a message nobody is to be told of queues nothing; a new or removed device counts from the next message', async (t) => {
  const pushService = await startPushService()
  t.teardown(pushService.close)
  const app = await build(t, { PUSH_COLLAPSE_MS: 100, OUTBOUND_ALLOWED_ADDRESSES: '127.0.0.1', OUTBOUND_CA_FILE: pushService.caFile })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const direct = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json().id as string
  const send = async (clientMsgId: string, text: string) =>
    t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${direct}/messages`, headers: ada.auth, payload: { clientMsgId, text } })).statusCode, 201)
  // BullMQ's own record of the jobs added to the events queue (its keys are outside the app's key prefix).
  const bull = app.redisConnection('test-bull')
  t.teardown(() => bull.quit())
  const jobsQueued = async () => (await bull.xrange(`${queuePrefix(app.config.REDIS_PREFIX)}:events:events`, '-', '+'))
    .map(([, fields]) => Object.fromEntries(fields.flatMap((value, i) => i % 2 === 0 ? [[value, fields[i + 1]]] : [])) as Record<string, string>)
    .filter((entry) => entry.event === 'added' && entry.jobId?.startsWith(`ev-${direct}-`)).length

  await send('n1', 'before any device')
  await settle(300)
  t.equal(await jobsQueued(), 0, 'no webhook and no device: no delivery job')
  const phone = pushService.device()
  t.equal((await app.inject({ method: 'POST', url: '/api/push/subscriptions', headers: bob.auth, payload: phone.subscription })).statusCode, 201)
  await send('n2', 'after the device')
  const [push] = await pushService.waitFor(1)
  t.equal(push!.payload.body, 'after the device', 'the device registered after the cached "no devices" is reached')
  t.equal(await jobsQueued(), 1)

  const [device] = (await app.inject({ url: '/api/push/subscriptions', headers: bob.auth })).json().subscriptions
  t.equal((await app.inject({ method: 'DELETE', url: `/api/push/subscriptions/${device.id}`, headers: bob.auth })).statusCode, 204)
  await send('n3', 'no device any more')
  await settle(300)
  t.equal(await jobsQueued(), 1, 'the removed device is forgotten from the next message')
  t.equal(pushService.received.length, 1)
})

t.test('subscriptions are checked: https only, public addresses only, real keys; bots have no devices', async (t) => {
  const pushService = await startPushService()
  t.teardown(pushService.close)
  const app = await build(t)
  const ada = await createUser(app)
  const device = pushService.device()
  const post = (payload: Record<string, unknown>) => app.inject({ method: 'POST', url: '/api/push/subscriptions', headers: ada.auth, payload })
  const code = async (payload: Record<string, unknown>) => (await post(payload)).json().code

  t.equal(await code(device.subscription), 'TARGET_NOT_ALLOWED', 'loopback refused without OUTBOUND_ALLOWED_ADDRESSES')
  for (const endpoint of ['https://10.1.2.3/push/x', 'https://169.254.169.254/latest', 'https://[::1]:8443/push', 'https://[::ffff:127.0.0.1]/push', 'https://localhost/push']) {
    t.equal(await code({ ...device.subscription, endpoint }), 'TARGET_NOT_ALLOWED', endpoint)
  }
  t.equal(await code({ ...device.subscription, endpoint: 'http://push.example.com/x' }), 'TARGET_NOT_ALLOWED', 'http refused')
  t.equal(await code({ ...device.subscription, endpoint: 'https://user:pw@push.example.com/x' }), 'TARGET_NOT_ALLOWED', 'credentials refused')
  t.equal(await code({ ...device.subscription, keys: { ...device.subscription.keys, p256dh: 'A'.repeat(87) } }), 'INVALID_PUSH_KEYS', 'not a P-256 point')
  t.equal(await code({ ...device.subscription, keys: { p256dh: device.subscription.keys.p256dh } }), 'VALIDATION_ERROR')
  t.equal(await code({ ...device.subscription, endpoint: { $gt: '' } }), 'VALIDATION_ERROR')
  t.equal(await app.push.collection.countDocuments(), 0, 'nothing stored')

  const bot = (await app.inject({ method: 'POST', url: '/api/bots', headers: ada.auth, payload: { username: `bot_${ada.id.slice(-6)}` } })).json()
  const botAuth = { authorization: `Bearer ${bot.apiKey}` }
  t.equal((await app.inject({ url: '/api/push/config', headers: botAuth })).json().code, 'NOT_FOR_BOTS')
})
