// The gateway when things go wrong: sockets that die, instances that die,
// Redis that restarts, clients that cannot keep up, reconnects mid-stream.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build, testServers, twoInstances } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect, type Frame } from './ws-client.js'
import { startRedis } from '../scripts/embedded.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const isPresence = (userId: string, online: boolean) => (f: Frame) => f.type === 'presence' && f.data.userId === userId && f.data.online === online

t.test('presence across instances: online with the first socket, offline after the last (with last seen)', async (t) => {
  const [one, two] = await twoInstances(t, { PRESENCE_GRACE_MS: 100 })
  const [ada, bob, eve] = [await createUser(one), await createUser(one), await createUser(one)]
  await directConversation(one, ada, bob)
  const bobSocket = await connect(two, { token: bob.accessToken })
  const eveSocket = await connect(two, { token: eve.accessToken })

  const phone = await connect(one, { token: ada.accessToken })
  await bobSocket.waitFor(isPresence(ada.id, true))
  const laptop = await connect(two, { token: ada.accessToken })
  await phone.close()
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.notOk(bobSocket.frames.some(isPresence(ada.id, false)), 'still online while another socket is open')
  await laptop.close()
  const offline = await bobSocket.waitFor(isPresence(ada.id, false))
  t.ok(offline.data.lastSeenAt)
  const profile = (await one.inject({ url: `/api/users/${ada.id}`, headers: bob.auth })).json()
  t.equal(profile.lastSeenAt, offline.data.lastSeenAt, 'last seen is stored')
  t.notOk(eveSocket.frames.some((f) => f.type === 'presence' && f.data.userId === ada.id), 'only people who share a conversation are told')
  await bobSocket.close()
  await eveSocket.close()
})

t.test('an instance killed without cleanup: its users go offline once their presence lapses', async (t) => {
  const app = await build(t, { PRESENCE_TTL_S: 2, PRESENCE_GRACE_MS: 0 })
  const { MONGODB_URI, REDIS_URL } = await testServers()
  const { MONGODB_DB, REDIS_PREFIX, JWT_SECRET, HASH_SECRET } = app.config
  const [ada, bob] = [await createUser(app), await createUser(app)]
  await directConversation(app, ada, bob)
  const bobSocket = await connect(app, { token: bob.accessToken })

  // A real second server process on the same Redis and database.
  const child = spawn(process.execPath, ['--import', pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href, join(root, 'server.ts')], {
    env: { ...process.env, MONGODB_URI, REDIS_URL, MONGODB_DB, REDIS_PREFIX, JWT_SECRET, HASH_SECRET, PORT: '0', LOG_LEVEL: 'warn', PRESENCE_TTL_S: '2', EMAIL_WORKER: 'false' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  const deadline = Date.now() + 30000
  let url: string | undefined
  while (!url && Date.now() < deadline) {
    url = /listening at http:\/\/(127\.0\.0\.1:\d+)/.exec(output)?.[1]
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (!url) throw new Error(`second server did not start: ${output}`)

  const { default: WebSocket } = await import('ws')
  const adaSocket = new WebSocket(`ws://${url}/ws`, { headers: { authorization: `Bearer ${ada.accessToken}` } })
  await once(adaSocket, 'open')
  await bobSocket.waitFor(isPresence(ada.id, true))

  child.kill('SIGKILL')
  await once(child, 'exit')
  const offline = await bobSocket.waitFor(isPresence(ada.id, false), 10000)
  t.ok(offline, 'offline announced by the surviving instance')
  adaSocket.terminate()
  await bobSocket.close()
})

t.test('resume after a forced disconnect while messages keep flowing: nothing lost, nothing twice, in order', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const TOTAL = 40
  let socket = await connect(app, { token: bob.accessToken })
  const received = new Map<number, number>() // seq → times received
  const order: number[] = []
  const log: string[] = []
  const take = (m: { seq: number }, via: string) => { received.set(m.seq, (received.get(m.seq) ?? 0) + 1); order.push(m.seq); log.push(`${via}:${m.seq}`) }
  socket.socket.on('message', (raw) => { const f = JSON.parse(raw.toString()); if (f.type === 'message.created') take(f.data.message, 'live1') })

  let lastChangeSeq = 0
  const sending = (async () => {
    for (let i = 1; i <= TOTAL; i++) {
      await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: `flow-${i}`, text: `message ${i}` } })
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()

  while (received.size < 10) await new Promise((resolve) => setTimeout(resolve, 10))
  // Drop the connection hard, the way a network does; what the client has is what it had read.
  socket.socket.removeAllListeners('message')
  socket.socket.terminate()
  lastChangeSeq = Math.max(...order) // seq and changeSeq coincide here: only sends happen
  await new Promise((resolve) => setTimeout(resolve, 150))

  socket = await connect(app, { token: bob.accessToken, query: '?resume=1' })
  // Frames are taken strictly in the order they arrive, the sync ack included.
  let caughtUp = 0
  socket.socket.on('message', (raw) => {
    const f = JSON.parse(raw.toString())
    if (f.type === 'message.created') take(f.data.message, 'live2')
    else if (f.type === 'ack' && f.data?.conversations) {
      for (const m of f.data.conversations[0].changes) take(m, 'sync')
      caughtUp = f.data.conversations[0].changes.length
    } else log.push(f.type)
  })
  const ack = await socket.request('sync', { conversations: [{ conversationId, since: lastChangeSeq }] })
  t.equal(ack.type, 'ack')
  t.ok(caughtUp > 0, 'something was missed and caught up')

  await sending
  const deadline = Date.now() + 10000
  while (received.size < TOTAL && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.same([...received.keys()].sort((a, b) => a - b), Array.from({ length: TOTAL }, (_, i) => i + 1), 'nothing lost')
  t.ok([...received.values()].every((n) => n === 1), 'nothing twice', { log })
  t.same(order, [...order].sort((a, b) => a - b), 'in order')
  await socket.close()
})

t.test('Redis restarted mid-test: instances resubscribe and clients are told to catch up', async (t) => {
  let redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await build(t, { REDIS_URL: redis.url })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  // The server's open ends with Bob announced online; stopping Redis earlier
  // fails his registration (a 1011 close, which a client reconnects from) and
  // tests something else.
  const adaSocket = await connect(app, { token: ada.accessToken })
  const bobSocket = await connect(app, { token: bob.accessToken })
  await adaSocket.waitFor((f) => f.type === 'presence' && f.data.userId === bob.id && f.data.online === true)
  await adaSocket.close()

  await redis.stop()
  redis = await startRedis({ port: redis.port })
  // Until the app has reconnected every request is a 503 (tested in outage.test.ts).
  for (let i = 0; i < 100 && app.redis.status !== 'ready'; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  // Redis lost everything, sessions included: sign in again on the new Redis.
  const [ada2, bob2] = await Promise.all([ada, bob].map(async (u) => {
    const { sessionId } = await app.sessions.create(u.id)
    return { ...u, accessToken: app.jwt.sign({ sub: u.id, sid: sessionId, typ: 'access' }) }
  }))
  await bobSocket.waitFor((f) => f.type === 'resync', 15000)
  t.pass('told to catch up')

  const live = await connect(app, { token: bob2!.accessToken })
  const sent = await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: { authorization: `Bearer ${ada2!.accessToken}` }, payload: { clientMsgId: 'after-restart', text: 'back' } })
  t.equal(sent.statusCode, 201)
  t.equal((await live.waitFor((f) => f.type === 'message.created')).data.message.text, 'back', 'events flow again')
  await live.close()
  await bobSocket.close()
})

t.test('a slow consumer is closed (1013) instead of buffered without limit', async (t) => {
  const app = await build(t, { WS_MAX_BUFFERED_BYTES: 64 * 1024, MESSAGE_MAX_LENGTH: 60000, BODY_LIMIT: 1048576 })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const slow = await connect(app, { token: bob.accessToken })
  // Stop reading: the kernel buffers fill, then the server's own send buffer grows.
  const raw = (slow.socket as unknown as { _socket: { pause: () => void, resume: () => void } })._socket
  raw.pause()
  const text = 'x'.repeat(60000)
  let i = 0
  const closed = slow.closed
  while (i < 600 && app.realtime.stats().slowConsumers === 0) {
    await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: `big-${i++}`, text } })
  }
  const deadline = Date.now() + 5000
  while (app.realtime.connectionCount() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(app.realtime.stats().slowConsumers, 1, 'closed as a slow consumer')
  t.equal(app.realtime.connectionCount(), 0)
  raw.resume()
  // It stopped reading, so it may not get to read the 1013 close frame before the socket is cut.
  t.ok([1013, 1006].includes((await closed).code))
})

t.test('heartbeats terminate dead sockets', async (t) => {
  const app = await build(t, { WS_HEARTBEAT_MS: 150 })
  const ada = await createUser(app)
  const s = await connect(app, { token: ada.accessToken })
  t.equal(app.realtime.connectionCount(), 1)
  // A peer that vanished: it never answers a ping again.
  ;(s.socket as unknown as { _socket: { pause: () => void } })._socket.pause()
  const deadline = Date.now() + 5000
  while (app.realtime.connectionCount() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(app.realtime.connectionCount(), 0)
  t.equal(app.realtime.stats().deadPeers, 1)
  s.socket.terminate()
})
