// Seeds a realistic data set straight into the database of a real server
// (BENCH_USERS users, BENCH_CONVERSATIONS direct conversations, BENCH_MESSAGES
// messages; 1k / 10k / 200k by default), signs some users in over HTTP, then
// loads the conversation list, message history and send with Bearer tokens,
// next to a bare Fastify hello-world measured in the same run.
import { ObjectId, MongoClient } from 'mongodb'
import type { Request } from 'autocannon'
import { hashPassword } from '../services/passwords.js'
import type { UserDoc } from '../services/users.js'
import type { ConversationDoc, MembershipDoc } from '../services/conversations.js'
import { messageIdFor, toMessageView, type MessageDoc } from '../services/messages.js'
import { MESSAGE_WINDOW } from '../services/read-model.js'
import { connections, cpuSeconds, cpuSecondsOfAll, embeddedEngine, embeddedPids, embeddedUrls, measure, ratio, startHello, startParley, type Started } from './lib.js'
import { bootCounting } from './round-trips.js'

const USERS = Number(process.env.BENCH_USERS ?? 1000)
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 10_000)
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000)
const SIGNED_IN = 50
// BENCH_CHAT_SENDS=0: reads only, for the data-size runs (each send run also waits up to 5 minutes for its writes behind).
const SENDS = process.env.BENCH_CHAT_SENDS !== '0'
const PASSWORD = 'bench password 1'
// The goals are stated at 10 connections; BENCH_CONNECTIONS overrides.
export const CONNECTIONS = process.env.BENCH_CONNECTIONS ? connections : 10
// The send goals are throughput with many clients sending at once: at 10
// connections a send's wait for its insert bounds it, so the sends run again
// with this many (BENCH_SEND_CONNECTIONS; 0 leaves those runs out).
const SEND_CONNECTIONS = Number(process.env.BENCH_SEND_CONNECTIONS ?? 100)
const load = (opts: Parameters<typeof measure>[0]): ReturnType<typeof measure> => measure({ connections: CONNECTIONS, ...opts })

interface Seeded {
  users: UserDoc[]
  conversations: ConversationDoc[]
  memberships: MembershipDoc[]
  conversationsByUser: Map<string, string[]>
  /** The messages of a seeded conversation, as stored. */
  messagesOf: (conversation: ConversationDoc) => MessageDoc[]
}

export async function seed (mongoUri: string): Promise<Seeded> {
  const client = new MongoClient(mongoUri)
  await client.connect()
  const db = client.db('parley')
  const passwordHash = await hashPassword(PASSWORD)
  const now = Date.now()
  const users: UserDoc[] = Array.from({ length: USERS }, (_, i) => {
    const name = `user${String(i).padStart(5, '0')}`
    const at = new Date(now - 86_400_000)
    return { _id: new ObjectId(), email: `${name}@bench.example`, username: name, usernameLower: name, displayName: `User ${i}`, displayNameLower: `user ${i}`, bio: '', avatarId: null, passwordHash, createdAt: at, updatedAt: at, passwordChangedAt: at, lastSeenAt: null }
  })
  await db.collection<UserDoc>('users').insertMany(users, { ordered: false })

  // Distinct pairs, spread so every user has about the same number.
  const pairs = new Set<string>()
  const conversations: ConversationDoc[] = []
  for (let i = 0; conversations.length < CONVERSATIONS; i++) {
    const a = i % USERS
    const b = (a + 1 + Math.floor(i / USERS) * 7 + (i % 5)) % USERS
    const [x, y] = [users[a]!._id.toHexString(), users[b]!._id.toHexString()].sort() as [string, string]
    if (x === y || pairs.has(`${x}:${y}`)) continue
    pairs.add(`${x}:${y}`)
    const at = new Date(now - 3_600_000)
    conversations.push({ _id: new ObjectId(), key: `direct:${x}:${y}`, type: 'direct', title: null, memberIds: [x, y], adminIds: [], createdBy: x, createdAt: at, updatedAt: at, lastActivityAt: at, lastSeq: 0, changeSeq: 0, lastMessage: null, lastSentSeq: {}, version: 0 })
  }

  const perConversation = Math.floor(MESSAGES / CONVERSATIONS)
  const indexOf = new Map(conversations.map((c, n) => [c, n]))
  const messageOf = (c: ConversationDoc, seq: number): MessageDoc => {
    const n = indexOf.get(c)!
    const id = c._id.toHexString()
    return { _id: messageIdFor(id, seq), conversationId: id, seq, changeSeq: seq, senderId: c.memberIds[seq % 2]!, clientMsgId: `seed-${seq}`, text: `Seeded message ${seq} in conversation ${n}, long enough to look like chat.`, attachments: [], reactions: [], createdAt: new Date(now - 3_600_000 + n * 10 + seq), editedAt: null, deletedAt: null }
  }
  const batch: MessageDoc[] = []
  const flush = async () => { if (batch.length > 0) await db.collection<MessageDoc>('messages').insertMany(batch.splice(0), { ordered: false }) }
  for (const c of conversations) {
    for (let seq = 1; seq <= perConversation; seq++) {
      const message = messageOf(c, seq)
      batch.push(message)
      c.lastSeq = seq
      c.changeSeq = seq
      c.lastActivityAt = message.createdAt
      c.lastMessage = { seq, senderId: message.senderId, preview: `Seeded message ${seq}`, createdAt: message.createdAt, deleted: false }
    }
    if (batch.length >= 5000) await flush()
  }
  await flush()
  await db.collection<ConversationDoc>('conversations').insertMany(conversations, { ordered: false })
  const memberships: MembershipDoc[] = conversations.flatMap((c) => c.memberIds.map((userId) => ({ _id: `${c._id.toHexString()}:${userId}`, conversationId: c._id.toHexString(), userId, lastReadSeq: Math.max(0, c.lastSeq - 3), mutedUntil: null, joinedAt: c.createdAt })))
  for (let i = 0; i < memberships.length; i += 5000) await db.collection<MembershipDoc>('memberships').insertMany(memberships.slice(i, i + 5000), { ordered: false })
  const conversationsByUser = new Map<string, string[]>()
  for (const c of conversations) for (const m of c.memberIds) conversationsByUser.set(m, [...(conversationsByUser.get(m) ?? []), c._id.toHexString()])
  await client.close()

  const messagesOf = (c: ConversationDoc): MessageDoc[] => Array.from({ length: c.lastSeq }, (_, i) => messageOf(c, i + 1))
  return { users, conversations, memberships, conversationsByUser, messagesOf }
}

export async function signIn (parley: Started, users: UserDoc[]): Promise<Array<{ token: string, userId: string }>> {
  const out: Array<{ token: string, userId: string }> = []
  for (const user of users.slice(0, SIGNED_IN)) {
    const res = await fetch(`${parley.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: user.username, password: PASSWORD }) })
    if (res.status !== 200) throw new Error(`login: ${res.status} ${await res.text()}`)
    out.push({ token: ((await res.json()) as { accessToken: string }).accessToken, userId: user._id.toHexString() })
  }
  return out
}

type Measure = Awaited<ReturnType<typeof measure>>

const METRICS_TOKEN_FOR_BENCH = 'bench-metrics-token-0123456789'

/** Conversation writes still waiting on these instances (their metrics). */
async function writesWaiting (urls: string[]): Promise<number> {
  const counts = await Promise.all(urls.map(async (url) => {
    const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN_FOR_BENCH}` } })).text()
    return Number(/^parley_conversation_writes_waiting (\d+)/m.exec(text)?.[1] ?? 0)
  }))
  return counts.reduce((a, b) => a + b, 0)
}

/** Runs a send scenario, then waits (at most 5 minutes) for the written-behind conversation documents to catch up. */
async function behind (urls: string[], run: () => Promise<Measure>): Promise<Measure & { writesBehindAtEnd: number, catchUpSeconds: number }> {
  const measured = await run()
  const writesBehindAtEnd = await writesWaiting(urls)
  const started = Date.now()
  while (await writesWaiting(urls) > 0 && Date.now() - started < 300_000) await new Promise((resolve) => setTimeout(resolve, 250))
  return { ...measured, writesBehindAtEnd, catchUpSeconds: Math.round((Date.now() - started) / 100) / 10 }
}

/** Where a run's CPU time goes: each role reads the CPU seconds its processes have used so far. */
type CpuRoles = Record<'server' | 'redis' | 'database', () => Promise<number>>

interface CpuUse {
  /**
   * CPU microseconds per response, by process: the server (both instances
   * for Parley), Redis, the MongoDB-wire server (FerretDB and every
   * PostgreSQL process), and this process (autocannon, the load generator).
   */
  microsecondsPerRequest: { server: number, redis: number, database: number, loadGenerator: number, total: number }
  /** Those processes together, in cores busy on average over the run. */
  coresBusy: number
}

/**
 * Runs `run` and adds what it cost in CPU. Throughput on this machine is
 * shared out among the load generator, the servers and the databases on the
 * same two cores, so the CPU each response costs is the steadier figure.
 */
async function withCpu<T extends Measure> (roles: CpuRoles, run: () => Promise<T>): Promise<T & { cpu: CpuUse }> {
  const read = async () => {
    const own = process.cpuUsage()
    return { server: await roles.server(), redis: await roles.redis(), database: await roles.database(), loadGenerator: (own.user + own.system) / 1e6 }
  }
  const before = await read()
  const started = performance.now()
  const measured = await run()
  const after = await read()
  const seconds = (performance.now() - started) / 1000
  // A PostgreSQL backend that ends during the run takes its CPU time with it,
  // so the database's figure may fall short of what it used (and is kept at 0 or more).
  const used = { server: after.server - before.server, redis: after.redis - before.redis, database: Math.max(0, after.database - before.database), loadGenerator: after.loadGenerator - before.loadGenerator }
  const total = used.server + used.redis + used.database + used.loadGenerator
  const perRequest = (cpu: number): number => Math.round((cpu / Math.max(1, measured.requests)) * 1e7) / 10
  return {
    ...measured,
    cpu: {
      microsecondsPerRequest: { server: perRequest(used.server), redis: perRequest(used.redis), database: perRequest(used.database), loadGenerator: perRequest(used.loadGenerator), total: perRequest(total) },
      coresBusy: Math.round((total / seconds) * 100) / 100
    }
  }
}

/** The same load on several instances at once (one autocannon each): summed throughput, worst latency. */
async function measureAcross (urls: string[], requests: (url: string) => Parameters<typeof measure>[0], total = CONNECTIONS): Promise<Measure> {
  const results = await Promise.all(urls.map((url) => load({ ...requests(url), connections: Math.max(1, Math.round(total / urls.length)) })))
  return {
    requestsPerSecond: results.reduce((n, r) => n + r.requestsPerSecond, 0),
    latencyP50Ms: Math.max(...results.map((r) => r.latencyP50Ms)),
    latencyP99Ms: Math.max(...results.map((r) => r.latencyP99Ms)),
    non2xx: results.reduce((n, r) => n + r.non2xx, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    requests: results.reduce((n, r) => n + r.requests, 0)
  }
}

export async function chatScenario (): Promise<Record<string, unknown>> {
  // Tokens outlive the run (seeding 1M messages into FerretDB takes minutes).
  const limits = { AUTH_RATE_LIMIT_MAX: '1000000000', RATE_LIMIT_MAX: '1000000000', SEND_RATE_LIMIT_MAX: '1000000000', SEARCH_RATE_LIMIT_MAX: '1000000000', ACCESS_TOKEN_TTL_S: '3600', METRICS_TOKEN: METRICS_TOKEN_FOR_BENCH }
  const hello = await startHello()
  const parley = await startParley(limits)
  let second: Started | undefined
  let counting: Awaited<ReturnType<typeof bootCounting>> | undefined
  try {
    const servers = embeddedUrls(parley)
    const seedStarted = Date.now()
    const seeded = await seed(servers.MONGODB_URI)
    const { users, conversationsByUser } = seeded
    const seedSeconds = Math.round((Date.now() - seedStarted) / 100) / 10
    second = await startParley({ ...limits, ...servers })
    const signedIn = await signIn(parley, users)

    // The data went straight into the database; had it been written through
    // the app, its read model would hold what every write puts there: the
    // conversations, their latest messages, read positions, profiles. Put
    // that (for the signed-in users' conversations), then let each user's
    // conversation list fill from MongoDB as it would after a Redis restart.
    counting = await bootCounting(servers)
    const primeStarted = Date.now()
    const { readModel } = counting.app
    const active = new Set(signedIn.flatMap((u) => conversationsByUser.get(u.userId)!))
    const activeConversations = seeded.conversations.filter((c) => active.has(c._id.toHexString()))
    await readModel.putConversations(activeConversations)
    for (const c of activeConversations) await readModel.putMessages(c._id.toHexString(), seeded.messagesOf(c).slice(-MESSAGE_WINDOW).map(toMessageView), c.lastSeq)
    for (const m of seeded.memberships) if (active.has(m.conversationId)) await readModel.putReadState(m)
    await readModel.putProfiles(users)
    for (const user of signedIn) await fetch(`${parley.url}/api/conversations?limit=1`, { headers: { authorization: `Bearer ${user.token}` } })
    const primeSeconds = Math.round((Date.now() - primeStarted) / 100) / 10
    const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!
    const auth = (token: string) => ({ authorization: `Bearer ${token}` })
    let counter = 0
    // One group of every signed-in user: the hot conversation.
    const created = await fetch(`${parley.url}/api/conversations`, { method: 'POST', headers: { ...auth(signedIn[0]!.token), 'content-type': 'application/json' }, body: JSON.stringify({ type: 'group', title: 'hot', memberIds: signedIn.slice(1).map((u) => u.userId) }) })
    const hot = ((await created.json()) as { id: string }).id
    const sendRequest = (conversationFor: (user: { userId: string }) => string): Request => ({
      method: 'POST' as const,
      path: '/',
      setupRequest: (req) => {
        const user = pick(signedIn)
        return { ...req, path: `/api/conversations/${conversationFor(user)}/messages`, headers: { ...auth(user.token), 'content-type': 'application/json' }, body: JSON.stringify({ clientMsgId: `bench-${process.pid}-${counter++}`, text: 'benchmark message' }) }
      }
    })
    const anyConversation = (user: { userId: string }): string => pick(conversationsByUser.get(user.userId)!)

    const pids = embeddedPids(parley)
    const none = async (): Promise<number> => 0
    const helloCpu: CpuRoles = { server: () => cpuSeconds(hello.child.pid!), redis: none, database: none }
    const parleyCpu: CpuRoles = {
      server: async () => await cpuSeconds(parley.child.pid!) + await cpuSeconds(second!.child.pid!),
      redis: () => cpuSeconds(pids.redis),
      database: async () => await cpuSeconds(pids.mongo) + await cpuSecondsOfAll('postgres')
    }

    const baseline = await withCpu(helloCpu, () => load({ url: hello.url }))
    // The reads are built once, one request per user (and per conversation
    // of each user for the page), shuffled: autocannon then sends prepared
    // bytes, as it does to the hello-world, instead of building every request
    // again (a setupRequest), which cost it 2× the CPU per response on the
    // cores it shares with the server.
    const shuffled = <T>(items: T[]): T[] => items.map((item) => ({ item, key: Math.random() })).sort((a, b) => a.key - b.key).map(({ item }) => item)
    const everyone = (paths: (user: { userId: string }) => string[]): Request[] =>
      shuffled(signedIn.flatMap((user) => paths(user).map((path) => ({ method: 'GET' as const, path, headers: auth(user.token) }))))
    const me = await withCpu(parleyCpu, () => load({ url: parley.url, requests: everyone(() => ['/api/auth/me']) }))
    const list = await withCpu(parleyCpu, () => load({ url: parley.url, requests: everyone(() => ['/api/conversations?limit=20']) }))
    const history = await withCpu(parleyCpu, () => load({ url: parley.url, requests: everyone((user) => conversationsByUser.get(user.userId)!.map((id) => `/api/conversations/${id}/messages?limit=50`)) }))
    // Conversation documents are written behind the sends: each send scenario
    // reports how many were still waiting when it ended and how long the
    // database took to catch up, which is waited out before the next one (and
    // counted in its CPU).
    const instances = [parley.url, second.url]
    const sendRuns = async (connections: number) => ({
      one: await withCpu(parleyCpu, () => behind(instances, () => load({ url: parley.url, connections, requests: [sendRequest(anyConversation)] }))),
      two: await withCpu(parleyCpu, () => behind(instances, () => measureAcross(instances, (url) => ({ url, requests: [sendRequest(anyConversation)] }), connections))),
      hot: await withCpu(parleyCpu, () => behind(instances, () => measureAcross(instances, (url) => ({ url, requests: [sendRequest(() => hot)] }), connections)))
    })
    const sends = SENDS ? await sendRuns(CONNECTIONS) : null
    const manySends = SENDS && SEND_CONNECTIONS > 0 ? await sendRuns(SEND_CONNECTIONS) : null

    // Round trips, counted in an instance booted in this process.
    const { app, measure: count } = counting
    const user = signedIn[1]!
    const conversation = conversationsByUser.get(user.userId)![0]!
    const get = (url: string) => () => app.inject({ method: 'GET', url, headers: auth(user.token) })
    const roundTrips = {
      me: await count(get('/api/auth/me')),
      list: await count(get('/api/conversations?limit=20')),
      latestPage: await count(get(`/api/conversations/${conversation}/messages?limit=50`)),
      olderPage: await count(get(`/api/conversations/${conversation}/messages?before=5&limit=50`)),
      changes: await count(get(`/api/conversations/${conversation}/changes?since=0&limit=100`)),
      search: await count(get('/api/search/messages?q=conversation')),
      send: await count(() => app.inject({ method: 'POST', url: `/api/conversations/${conversation}/messages`, headers: auth(user.token), payload: { clientMsgId: `count-${counter++}`, text: 'counted' } }))
    }

    // serverCpuTimesHello: what a response costs the server in CPU, in hello-world responses.
    const row = (name: string, m: (Measure & { cpu: CpuUse }) | null, skippedBy = 'BENCH_CHAT_SENDS=0') => m === null
      ? { name, skipped: skippedBy }
      : { name, ...m, ratio: ratio(m.requestsPerSecond, baseline.requestsPerSecond), serverCpuTimesHello: ratio(m.cpu.microsecondsPerRequest.server, baseline.cpu.microsecondsPerRequest.server) }
    const manyRow = (name: string, m: (Measure & { cpu: CpuUse }) | null) => row(`${name}, ${SEND_CONNECTIONS} connections`, m, SENDS ? 'BENCH_SEND_CONNECTIONS=0' : 'BENCH_CHAT_SENDS=0')
    return {
      connections: CONNECTIONS,
      database: embeddedEngine(parley),
      dataSet: { users: USERS, conversations: CONVERSATIONS, messages: Math.floor(MESSAGES / CONVERSATIONS) * CONVERSATIONS, seedSeconds, readModelPrimeSeconds: primeSeconds },
      baseline: { name: 'bare Fastify hello-world', ...baseline },
      me: row('GET /api/auth/me', me),
      conversationList: row('GET /api/conversations?limit=20', list),
      history: row('GET /api/conversations/:id/messages?limit=50 (latest page)', history),
      send: row('POST /api/conversations/:id/messages, 1 instance, random conversations', sends?.one ?? null),
      sendTwoInstances: row('POST …/messages, 2 instances, random conversations', sends?.two ?? null),
      sendHotConversation: row('POST …/messages, 2 instances, one group of 50', sends?.hot ?? null),
      manySenders: {
        send: manyRow('POST …/messages, 1 instance, random conversations', manySends?.one ?? null),
        sendTwoInstances: manyRow('POST …/messages, 2 instances, random conversations', manySends?.two ?? null),
        sendHotConversation: manyRow('POST …/messages, 2 instances, one group of 50', manySends?.hot ?? null)
      },
      roundTripsPerRequest: roundTrips
    }
  } finally {
    await counting?.app.close().catch(() => {})
    await Promise.allSettled([hello.stop(), second?.stop(), parley.stop()])
  }
}
