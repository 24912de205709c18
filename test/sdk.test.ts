// The client SDK against the real server: tokens, the typed routes, and the
// real-time connection through instance failures and network cuts. Clients
// reach the instances through a small TCP relay that plays the load
// balancer: it can cut every connection, refuse new ones, or send them to
// another instance.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { build, testServers } from './helper.js'
import { createUser, directConversation, type TestUser } from './accounts.js'
import { listen } from './ws-client.js'
import { relay } from './relay.js'
import { createClient, ParleyError, type MessageView } from '../client/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const NodeWebSocket = WebSocket

const portOf = async (app: FastifyInstance): Promise<number> => Number(new URL((await listen(app)).replace('ws', 'http')).port)

async function signedInClient (baseUrl: string, user: TestUser, extra: Partial<Parameters<typeof createClient>[0]> = {}) {
  const client = createClient({ baseUrl, WebSocket: NodeWebSocket, realtime: { minDelayMs: 50, maxDelayMs: 400, gapWaitMs: 200 }, ...extra })
  await client.auth.login(user.username, user.password)
  return client
}

/** What the application saw, per conversation, by seq: the latest state and how many times it was told. */
function recorder (client: ReturnType<typeof createClient>) {
  const seen = new Map<number, { message: MessageView, times: number }>()
  const changeOrder: number[] = []
  client.realtime.on('message', ({ message }) => {
    const entry = seen.get(message.seq)
    seen.set(message.seq, { message, times: (entry?.times ?? 0) + 1 })
    changeOrder.push(message.changeSeq)
  })
  return { seen, changeOrder }
}

async function until (check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('accounts: sign-in, typed routes, errors with their code, refresh on a 401 shared by concurrent callers, reuse signs out', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const port = await portOf(app)
  let refreshes = 0
  const countingFetch: typeof fetch = async (input, init) => {
    if (String(input).endsWith('/api/auth/refresh')) refreshes++
    return fetch(input, init)
  }
  const saved: Array<string | null> = []
  const signedOut: string[] = []
  const client = createClient({ baseUrl: `http://127.0.0.1:${port}`, fetch: countingFetch, WebSocket: NodeWebSocket, onRefreshToken: (token) => saved.push(token), onSignedOut: (reason) => signedOut.push(reason) })

  const signed = await client.auth.login(ada.username, ada.password)
  t.equal(signed.user.id, ada.id)
  t.equal(client.currentUser?.username, ada.username)
  t.ok(saved[0], 'the refresh token is handed over to be kept')

  const conversation = await client.conversations.create({ type: 'direct', userId: bob.id })
  const sent = await client.messages.send(conversation.id, { clientMsgId: 'sdk-1', text: 'hello from the SDK' })
  t.equal(sent.seq, 1)
  const page = await client.messages.page(conversation.id)
  t.same(page.messages.map((m) => m.text), ['hello from the SDK'])

  const missing = await client.conversations.get('0123456789abcdef01234567').catch((err: unknown) => err)
  t.ok(missing instanceof ParleyError)
  t.match(missing, { code: 'CONVERSATION_NOT_FOUND', status: 404 }, 'errors carry the stable code')
  const invalid = await client.messages.send(conversation.id, { clientMsgId: 'bad id!', text: 'x' }).catch((err: unknown) => err)
  t.match(invalid, { code: 'VALIDATION_ERROR', status: 400 })

  // An access token the server no longer takes (as when it expired in flight):
  // five concurrent calls, one refresh, all answered.
  client.http.accept({ accessToken: 'eyJhbGciOiJIUzI1NiJ9.e30.invalid', expiresIn: 900 })
  refreshes = 0
  const answers = await Promise.all(Array.from({ length: 5 }, () => client.auth.me()))
  t.ok(answers.every((me) => me.id === ada.id), 'every caller answered')
  t.equal(refreshes, 1, 'one refresh shared by the five')
  t.equal(saved.length, 2, 'the new refresh token handed over')

  // Before expiry: a client whose clock says the token is about to lapse refreshes first.
  let clock = Date.now()
  const early = createClient({ baseUrl: `http://127.0.0.1:${port}`, fetch: countingFetch, now: () => clock })
  await early.auth.login(bob.username, bob.password)
  refreshes = 0
  clock += (app.config.ACCESS_TOKEN_TTL_S - 10) * 1000
  await early.auth.me()
  t.equal(refreshes, 1, 'refreshed ahead of expiry')

  // Someone replays a refresh token that was already used: the session ends, and the client signs out once.
  const stolen = saved[0]!
  const replay = await fetch(`http://127.0.0.1:${port}/api/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: stolen }) })
  t.equal(((await replay.json()) as { code: string }).code, 'REFRESH_TOKEN_REUSED')
  client.http.accept({ accessToken: 'eyJhbGciOiJIUzI1NiJ9.e30.invalid', expiresIn: 900 })
  const after = await client.auth.me().catch((err: unknown) => err)
  t.ok(after instanceof ParleyError && ['INVALID_REFRESH_TOKEN', 'SESSION_REVOKED', 'REFRESH_TOKEN_REUSED'].includes(after.code), 'refused with a sign-out code')
  t.equal(signedOut.length, 1, 'signed out once')
  t.equal(saved.at(-1), null, 'the kept refresh token is cleared')
  t.equal(client.http.isSignedIn, false)
})

t.test('real time: an instance is killed while messages flow; the client ends with exactly the server\'s history, each change once, in order', async (t) => {
  const app = await build(t, { SEND_RATE_LIMIT_MAX: 100000 })
  const { MONGODB_URI, REDIS_URL, REDIS_CLUSTER_NODES } = await testServers()
  const { MONGODB_DB, REDIS_PREFIX, JWT_SECRET, HASH_SECRET } = app.config
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)

  // Instance one: a real server process that gets SIGKILLed. Instance two: the app above.
  const child: ChildProcess = spawn(process.execPath, ['--import', pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href, join(root, 'server.ts')], {
    env: { ...process.env, MONGODB_URI, REDIS_URL, REDIS_CLUSTER_NODES, MONGODB_DB, REDIS_PREFIX, JWT_SECRET, HASH_SECRET, PORT: '0', LOG_LEVEL: 'warn', EMAIL_WORKER: 'false' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout!.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { output += c.toString() })
  await until(() => /listening at http:\/\/127\.0\.0\.1:\d+/.test(output), 30000, `the second server (${output})`)
  const childPort = Number(/listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(output)![1])

  const lb = await relay(childPort)
  t.teardown(lb.close)
  const client = await signedInClient(lb.url, bob)
  const { seen, changeOrder } = recorder(client)
  const states: string[] = []
  client.realtime.on('state', ({ state }) => states.push(state))
  await client.conversations.list()
  await client.realtime.connect()

  const TOTAL = 60
  const sending = (async () => {
    for (let i = 1; i <= TOTAL; i++) {
      await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: `kill-${i}`, text: `message ${i}` } })
      if (i % 5 === 0) {
        // An edit now and then: changes other than sends must come through once too.
        const list = (await app.inject({ url: `/api/conversations/${conversationId}/messages?limit=1`, headers: ada.auth })).json()
        await app.inject({ method: 'PATCH', url: `/api/messages/${list.messages[0].id}`, headers: ada.auth, payload: { text: `message ${i} (edited)` } })
      }
      await new Promise((resolve) => setTimeout(resolve, 15))
    }
  })()
  await until(() => seen.size >= 15, 10000, 'the first messages')
  child.kill('SIGKILL')
  lb.target(await portOf(app))
  lb.cut()
  await sending

  const server = (await app.inject({ url: `/api/conversations/${conversationId}/messages?limit=100`, headers: bob.auth })).json().messages as MessageView[]
  t.equal(server.length, TOTAL)
  await until(() => server.every((m) => seen.get(m.seq)?.message.changeSeq === m.changeSeq), 15000, 'the client to catch up')
  t.same([...seen.keys()].sort((a, b) => a - b), server.map((m) => m.seq).sort((a, b) => a - b), 'the client has every message')
  t.ok(server.every((m) => seen.get(m.seq)!.message.text === m.text), 'in its current state (edits included)')
  t.same(changeOrder, [...changeOrder].sort((a, b) => a - b), 'changes delivered in order')
  t.equal(new Set(changeOrder).size, changeOrder.length, 'each change once')
  t.ok(states.includes('reconnecting'), 'the client saw the instance go and reconnected by itself')
  t.equal(client.realtime.connectionState, 'open')
  client.realtime.close()
})

t.test('outbox: sent while offline, or with the acknowledgement cut off, stored once after the reconnect', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const lb = await relay(await portOf(app))
  t.teardown(lb.close)
  const client = await signedInClient(lb.url, ada)
  const states: string[] = []
  client.realtime.on('state', ({ state }) => states.push(state))
  await client.conversations.list()
  await client.realtime.connect()

  // Offline: the connection drops and nothing gets through for a while.
  lb.refuse(true)
  lb.cut()
  await until(() => client.realtime.connectionState === 'reconnecting', 5000, 'the client to notice')
  const offline = client.realtime.send({ conversationId, text: 'written offline' })
  await new Promise((resolve) => setTimeout(resolve, 500))
  lb.refuse(false)
  const stored = await offline
  t.equal(stored.text, 'written offline')

  // The send reaches the server, is stored, but its ack never arrives and the
  // connection dies: the SDK sends it again with the same clientMsgId after
  // reconnecting. (The ack is dropped on the way, not raced against a cut.)
  const texts = async (): Promise<string[]> => ((await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json().messages as MessageView[]).map((m) => m.text ?? '')
  lb.loseReplies(true)
  const lost = client.realtime.send({ conversationId, text: 'ack lost', clientMsgId: 'ack-lost-1' })
  for (let waited = 0; !(await texts()).includes('ack lost'); waited += 20) {
    if (waited > 5000) throw new Error('timed out waiting for the send to be stored')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  lb.cut()
  lb.loseReplies(false)
  const again = await lost
  t.equal(again.clientMsgId, 'ack-lost-1')

  t.same(await texts(), ['written offline', 'ack lost'], 'each stored once')
  t.ok(states.filter((s) => s === 'reconnecting').length >= 2)
  client.realtime.close()
})

t.test('token expiry mid-session is invisible: the reconnect refreshes the token itself; typing, read receipts and presence', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)
  const lb = await relay(await portOf(app))
  t.teardown(lb.close)
  const adaClient = await signedInClient(lb.url, ada)
  const bobClient = await signedInClient(lb.url, bob)
  await adaClient.conversations.list()
  await bobClient.conversations.list()
  await Promise.all([adaClient.realtime.connect(), bobClient.realtime.connect()])

  const typing = new Promise((resolve) => bobClient.realtime.on('typing', resolve))
  adaClient.realtime.typing(conversationId)
  adaClient.realtime.typing(conversationId) // throttled: one frame
  t.match(await typing, { conversationId, userId: ada.id, state: 'start' })

  const presence = await bobClient.realtime.request('presence', { userIds: [ada.id] })
  t.same(presence.users.map((u) => [u.userId, u.online]), [[ada.id, true]])

  // Ada's access token is no longer accepted; her connection drops.
  adaClient.http.accept({ accessToken: 'eyJhbGciOiJIUzI1NiJ9.e30.invalid', expiresIn: 900 })
  lb.cut()
  const arrived = new Promise<MessageView>((resolve) => bobClient.realtime.on('message', ({ message }) => resolve(message)))
  const sent = await adaClient.realtime.send({ conversationId, text: 'after the token lapsed' })
  t.equal((await arrived).id, sent.id, 'delivered to Bob')
  const read = new Promise((resolve) => adaClient.realtime.on('read.updated', resolve))
  await bobClient.realtime.request('read', { conversationId, seq: sent.seq })
  t.match(await read, { conversationId, userId: bob.id, lastReadSeq: sent.seq }, 'read receipt')
  adaClient.realtime.close()
  bobClient.realtime.close()
})

t.test('removed from a group while offline: the resume drops it (conversation.removed) and still catches up the rest', async (t) => {
  const app = await build(t)
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const direct = await directConversation(app, ada, bob)
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'team', memberIds: [bob.id] } })).json().id as string
  const lb = await relay(await portOf(app))
  t.teardown(lb.close)
  const client = await signedInClient(lb.url, bob)
  const removed: string[] = []
  client.realtime.on('conversation.removed', ({ conversationId }) => removed.push(conversationId))
  const { seen } = recorder(client)
  await client.conversations.list()
  await client.realtime.connect()

  lb.refuse(true)
  lb.cut()
  await until(() => client.realtime.connectionState === 'reconnecting', 5000, 'the client to notice')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/conversations/${group}/members/${bob.id}`, headers: ada.auth })).statusCode, 200)
  await app.inject({ method: 'POST', url: `/api/conversations/${direct}/messages`, headers: ada.auth, payload: { clientMsgId: 'while-away', text: 'while you were away' } })
  lb.refuse(false)

  await until(() => client.realtime.connectionState === 'open' && seen.size === 1, 10000, 'the resume')
  t.same(removed, [group], 'told it is gone')
  t.equal([...seen.values()][0]!.message.text, 'while you were away')
  client.realtime.close()
})
