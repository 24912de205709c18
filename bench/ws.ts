// WebSocket load: BENCH_WS_CLIENTS clients spread over BENCH_WS_INSTANCES real
// server processes (one database; one Redis, then a local Redis Cluster of 3
// primaries + 3 replicas: BENCH_WS_REDIS=single,cluster), in groups of 10, each sending
// BENCH_WS_RATE messages a second. Reports delivered messages per second,
// send→receive latency and server RSS per connection, and checks that every
// message reached every member exactly once. The same load against a bare `ws`
// fan-out server in one process is the ceiling; a Socket.IO + redis-adapter
// server that inserts each message (bench/ws-socketio-peer.ts), on the same
// database and Redis with as many instances, is the peer. `ws-idle` holds
// BENCH_WS_IDLE sockets (20,000 by default) on one instance and reports RSS per socket.
import { execSync, spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { io as socketIo, type Socket as SocketIoClient } from 'socket.io-client'
import { MongoClient, ObjectId } from 'mongodb'
import { hashPassword } from '../services/passwords.js'
import type { UserDoc } from '../services/users.js'
import { startRedisCluster, type RedisCluster } from '../scripts/embedded.js'
import { cpuSeconds, duration, embeddedMongo, embeddedUrls, percentile, ratio, root, rss, startParley, type Started } from './lib.js'

const CLIENTS = Number(process.env.BENCH_WS_CLIENTS ?? 200)
// One run per instance count: BENCH_WS_INSTANCES=1,2,4
const INSTANCE_COUNTS = (process.env.BENCH_WS_INSTANCES ?? '1,2,4').split(',').map(Number)
const REDIS_MODES = (process.env.BENCH_WS_REDIS ?? 'single,cluster').split(',') as Array<'single' | 'cluster'>
const RATE = Number(process.env.BENCH_WS_RATE ?? 1)
// BENCH_WS_PEER=0 skips the Socket.IO peer (it runs next to each one-Redis run).
const PEER = process.env.BENCH_WS_PEER !== '0'
const GROUP = 10
const PASSWORD = 'bench password 1'
const tsx = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href

interface LoadResult {
  sent: number
  acked: number
  delivered: number
  expected: number
  duplicates: number
  missing: number
  deliveredPerSecond: number
  latencyP50Ms: number
  latencyP99Ms: number
  errors: number
}

/**
 * Drives `sockets[i]` (member of group i / 10) at RATE sends a second for the
 * bench duration, then waits for stragglers. `send(socket, i, n)` sends message n of client i.
 */
interface DrivenSocket {
  on: (event: 'message', listener: (raw: Buffer | string) => void) => unknown
  send: (frame: string) => void
  terminate: () => void
}

/** A Socket.IO client seen as the frames drive() speaks: `send` is an emit with an ack, events come back as frames. */
class SocketIoFrames extends EventEmitter implements DrivenSocket {
  constructor (private readonly client: SocketIoClient) {
    super()
    client.on('message.created', (data: unknown) => this.emit('message', JSON.stringify({ type: 'message.created', data })))
  }

  send (frame: string): void {
    const { data } = JSON.parse(frame) as { data: unknown }
    this.client.emit('send', data, (reply: { error?: string }) => this.emit('message', JSON.stringify({ type: reply.error ? 'error' : 'ack' })))
  }

  terminate (): void {
    this.client.disconnect()
  }
}

async function drive (sockets: DrivenSocket[], frameFor: (client: number, n: number) => string): Promise<LoadResult> {
  const sentAt = new Map<string, number>()
  const receipts = new Map<string, number>() // `${clientMsgId}|${receiver}` → count
  const latencies: number[] = []
  let acked = 0
  let errors = 0
  sockets.forEach((socket, receiver) => {
    socket.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { type: string, data?: { message?: { clientMsgId: string } } }
      if (frame.type === 'ack') { acked++; return }
      if (frame.type === 'error') { errors++; return }
      if (frame.type !== 'message.created' || !frame.data?.message) return
      const id = frame.data.message.clientMsgId
      const key = `${id}|${receiver}`
      receipts.set(key, (receipts.get(key) ?? 0) + 1)
      const at = sentAt.get(id)
      if (at !== undefined) latencies.push(performance.now() - at)
    })
  })
  const started = performance.now()
  const end = started + duration * 1000
  let sent = 0
  await Promise.all(sockets.map(async (socket, client) => {
    // Spread the clients over the first second.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 1000 / RATE))
    for (let n = 0; performance.now() < end; n++) {
      const id = `c${client}-${n}`
      sentAt.set(id, performance.now())
      socket.send(frameFor(client, n))
      sent++
      await new Promise((resolve) => setTimeout(resolve, 1000 / RATE))
    }
  }))
  const expected = sent * GROUP
  const deadline = performance.now() + 15000
  while (latencies.length < expected && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  const elapsed = (performance.now() - started) / 1000
  let duplicates = 0
  for (const count of receipts.values()) if (count > 1) duplicates += count - 1
  latencies.sort((a, b) => a - b)
  return {
    sent,
    acked,
    delivered: latencies.length,
    expected,
    duplicates,
    missing: Math.max(0, expected - (latencies.length - duplicates)),
    deliveredPerSecond: Math.round(latencies.length / elapsed),
    latencyP50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
    latencyP99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
    errors
  }
}

async function openSockets (urls: string[]): Promise<WebSocket[]> {
  return Promise.all(urls.map((url, i) => new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, headers: headersFor[i] ?? {} })
    socket.once('open', () => resolve(socket))
    socket.once('error', reject)
  })))
}
let headersFor: Array<Record<string, string>> = []

async function seedUsers (mongoUri: string, count: number): Promise<UserDoc[]> {
  const client = new MongoClient(mongoUri)
  await client.connect()
  const passwordHash = await hashPassword(PASSWORD)
  const at = new Date()
  const users: UserDoc[] = Array.from({ length: count }, (_, i) => {
    const name = `ws${String(i).padStart(6, '0')}`
    return { _id: new ObjectId(), email: `${name}@bench.example`, username: name, usernameLower: name, displayName: name, displayNameLower: name, bio: '', avatarId: null, passwordHash, createdAt: at, updatedAt: at, passwordChangedAt: at, lastSeenAt: null }
  })
  await client.db('parley').collection<UserDoc>('users').insertMany(users)
  await client.close()
  return users
}

async function api<T> (base: string, path: string, body: unknown, token?: string): Promise<T> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) })
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  return res.json() as Promise<T>
}

/** A bench script in its own process, once it printed `listening <port>`. */
async function startScript (script: string, env: NodeJS.ProcessEnv = {}): Promise<{ port: string, pid: number, stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', tsx, join(root, script)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const [chunk] = await once(child.stdout!, 'data') as [Buffer]
  const port = /listening (\d+)/.exec(chunk.toString())?.[1]
  if (port === undefined) throw new Error(`${script} did not start: ${chunk.toString()}`)
  return { port, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit') } }
}

async function startBaseline (): Promise<{ url: string, pid: number, stop: () => Promise<void> }> {
  const { port, ...started } = await startScript('bench/ws-baseline.ts')
  return { url: `ws://127.0.0.1:${port}`, ...started }
}

/** `count` Socket.IO peer processes on the given database and Redis. */
async function startPeers (count: number, env: { MONGODB_URI: string, REDIS_URL: string }): Promise<Array<{ url: string, pid: number, stop: () => Promise<void> }>> {
  return Promise.all(Array.from({ length: count }, async () => {
    const { port, ...started } = await startScript('bench/ws-socketio-peer.ts', env)
    return { url: `http://127.0.0.1:${port}`, ...started }
  }))
}

/** The same load on the Socket.IO peer: client i on peer instance i % count. */
async function peerRun (count: number, env: { MONGODB_URI: string, REDIS_URL: string }): Promise<LoadResult & { instances: number, cpuSecondsPerSecond: number[] }> {
  const peers = await startPeers(count, env)
  try {
    const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => new Promise<SocketIoClient>((resolve, reject) => {
      const client = socketIo(peers[i % count]!.url, { transports: ['websocket'], query: { group: String(Math.floor(i / GROUP)) }, reconnection: false })
      client.once('connect', () => resolve(client))
      client.once('connect_error', reject)
    })))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const cpuBefore = await Promise.all(peers.map((p) => cpuSeconds(p.pid)))
    const drivenAt = performance.now()
    const result = await drive(clients.map((c) => new SocketIoFrames(c)), (client, n) => JSON.stringify({ data: { clientMsgId: `c${client}-${n}`, text: `bench message ${n} from ${client}` } }))
    const drivenSeconds = (performance.now() - drivenAt) / 1000
    const cpu = await Promise.all(peers.map(async (p, i) => Math.round((((await cpuSeconds(p.pid)) - cpuBefore[i]!) / drivenSeconds) * 1000) / 1000))
    for (const c of clients) c.disconnect()
    return { instances: count, ...result, cpuSecondsPerSecond: cpu }
  } finally {
    await Promise.allSettled(peers.map((p) => p.stop()))
  }
}

/** CPU seconds so far (user + system) and role of each Redis server, from INFO. */
async function redisCpuSeconds (redisUrls: string[]): Promise<Array<{ url: string, role: string, cpu: number }>> {
  const { Redis } = await import('ioredis')
  return Promise.all(redisUrls.map(async (url) => {
    const redis = new Redis(url)
    try {
      const info = await redis.info()
      const value = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0)
      return { url, role: /role:(\w+)/.exec(info)?.[1] ?? '?', cpu: value('used_cpu_user') + value('used_cpu_sys') }
    } finally {
      redis.disconnect()
    }
  }))
}

/** What an instance said on shutdown about the events it received and delivered. */
function fanOutOf (instance: Started): { eventsReceived: number, eventsDelivered: number } {
  const match = /real time: (\d+) events received from Redis, (\d+) delivered/.exec(instance.output())
  return { eventsReceived: Number(match?.[1] ?? 0), eventsDelivered: Number(match?.[2] ?? 0) }
}

async function wsRun (instanceCount: number, redisMode: 'single' | 'cluster'): Promise<Record<string, unknown>> {
  const secrets = { JWT_SECRET: randomBytes(32).toString('hex'), HASH_SECRET: randomBytes(32).toString('hex') }
  let cluster: RedisCluster | undefined
  if (redisMode === 'cluster') cluster = await startRedisCluster()
  const common = { ...secrets, AUTH_RATE_LIMIT_MAX: '100000000', SEND_RATE_LIMIT_MAX: '100000000', WS_RATE_PER_SECOND: '1000', WS_RATE_BURST: '1000', PRESENCE_GRACE_MS: '0', ...(cluster ? { REDIS_CLUSTER_NODES: cluster.nodes } : {}) }
  const instances: Started[] = []
  let stopped = false
  try {
    const first = await startParley(common)
    instances.push(first)
    const shared = cluster ? { MONGODB_URI: embeddedMongo(first) } : embeddedUrls(first)
    const redisUrls = cluster ? cluster.servers.map((server) => server.url) : [(shared as { REDIS_URL: string }).REDIS_URL]
    for (let i = 1; i < instanceCount; i++) instances.push(await startParley({ ...common, ...shared }))
    const users = await seedUsers(shared.MONGODB_URI, CLIENTS)
    const tokens: string[] = []
    for (const user of users) tokens.push((await api<{ accessToken: string }>(first.url, '/api/auth/login', { login: user.username, password: PASSWORD })).accessToken)
    const groups: string[] = []
    for (let g = 0; g * GROUP < CLIENTS; g++) {
      const members = users.slice(g * GROUP, (g + 1) * GROUP).map((u) => u._id.toHexString())
      groups.push((await api<{ id: string }>(first.url, '/api/conversations', { type: 'group', title: `bench ${g}`, memberIds: members.slice(1) }, tokens[g * GROUP])).id)
    }

    // The peer first, on the same database and Redis (Parley's instances idle meanwhile).
    const peer = PEER && !cluster ? await peerRun(instanceCount, shared as { MONGODB_URI: string, REDIS_URL: string }) : undefined

    // Parley: client i on instance i % instanceCount.
    const rssBefore = await Promise.all(instances.map((s) => rss(s.child.pid!)))
    headersFor = tokens.map((token) => ({ authorization: `Bearer ${token}` }))
    const sockets = await openSockets(tokens.map((_, i) => `${instances[i % instanceCount]!.url.replace('http', 'ws')}/ws`))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const rssConnected = await Promise.all(instances.map((s) => rss(s.child.pid!)))
    const cpuBefore = await redisCpuSeconds(redisUrls)
    const instanceCpuBefore = await Promise.all(instances.map((s) => cpuSeconds(s.child.pid!)))
    const drivenAt = performance.now()
    const parley = await drive(sockets, (client, n) => JSON.stringify({ type: 'send', ref: `${n}`, data: { conversationId: groups[Math.floor(client / GROUP)], clientMsgId: `c${client}-${n}`, text: `bench message ${n} from ${client}` } }))
    const drivenSeconds = (performance.now() - drivenAt) / 1000
    const redisNodes = (await redisCpuSeconds(redisUrls)).map((node, i) => ({
      node: node.url.replace('redis://', ''),
      role: node.role,
      cpuSecondsPerSecond: Math.round(((node.cpu - cpuBefore[i]!.cpu) / drivenSeconds) * 1000) / 1000
    }))
    const instanceCpu = await Promise.all(instances.map(async (s, i) => (await cpuSeconds(s.child.pid!)) - instanceCpuBefore[i]!))
    for (const s of sockets) s.terminate()
    await new Promise((resolve) => setTimeout(resolve, 500))
    // Each instance reports its fan-out on shutdown.
    await Promise.allSettled(instances.slice(1).map((s) => s.stop()))
    await first.stop()
    stopped = true
    const perInstance = instances.map((s, i) => {
      const { eventsReceived, eventsDelivered } = fanOutOf(s)
      return {
        eventsReceived,
        eventsDelivered,
        receivedPerDelivered: eventsDelivered > 0 ? ratio(eventsReceived, eventsDelivered) : null,
        cpuSecondsPerSecond: Math.round((instanceCpu[i]! / drivenSeconds) * 1000) / 1000
      }
    })
    const rssPerConnection = rssConnected.reduce((sum, after, i) => sum + after - rssBefore[i]!, 0) / CLIENTS
    return {
      redis: cluster ? 'cluster: 3 primaries + 3 replicas' : 'one server',
      instances: instanceCount,
      ...parley,
      exactlyOnce: parley.duplicates === 0 && parley.missing === 0,
      rssPerConnectionBytes: Math.round(rssPerConnection),
      redisCpuSecondsPerSecond: Math.round(redisNodes.reduce((sum, node) => sum + node.cpuSecondsPerSecond, 0) * 1000) / 1000,
      redisNodes,
      perInstance,
      ...(peer
        ? {
            socketIoPeer: { name: 'Socket.IO + @socket.io/redis-adapter, each message inserted, same instances, database and Redis', ...peer, exactlyOnce: peer.duplicates === 0 && peer.missing === 0 },
            vsSocketIoPeer: { deliveredPerSecondParleyOverPeer: ratio(parley.deliveredPerSecond, peer.deliveredPerSecond), latencyP50PeerOverParley: ratio(peer.latencyP50Ms, parley.latencyP50Ms), latencyP99PeerOverParley: ratio(peer.latencyP99Ms, parley.latencyP99Ms) }
          }
        : {})
    }
  } finally {
    if (!stopped) {
      await Promise.allSettled(instances.slice(1).map((s) => s.stop()))
      await instances[0]?.stop()
    }
    await cluster?.stop()
  }
}

export async function wsScenario (): Promise<Record<string, unknown>> {
  // The ceiling: the same clients and groups on a bare ws fan-out in one process.
  const baselineServer = await startBaseline()
  let bare: LoadResult
  try {
    headersFor = []
    const bareSockets = await openSockets(Array.from({ length: CLIENTS }, (_, i) => `${baselineServer.url}/?group=${Math.floor(i / GROUP)}`))
    bare = await drive(bareSockets, (client, n) => JSON.stringify({ type: 'send', ref: `${n}`, data: { clientMsgId: `c${client}-${n}`, text: `bench message ${n} from ${client}` } }))
    for (const s of bareSockets) s.terminate()
  } finally {
    await baselineServer.stop()
  }
  const runs: Array<Record<string, unknown>> = []
  for (const redisMode of REDIS_MODES) {
    for (const count of INSTANCE_COUNTS) {
      const run = await wsRun(count, redisMode)
      runs.push({ ...run, ratio: { deliveredPerSecond: ratio(run.deliveredPerSecond as number, bare.deliveredPerSecond) } })
    }
  }
  return {
    setup: { clients: CLIENTS, groupSize: GROUP, ratePerClient: RATE, seconds: duration, redis: REDIS_MODES },
    baseline: { name: 'bare ws fan-out, one process, nothing stored', ...bare },
    parley: runs
  }
}

export async function wsIdleScenario (): Promise<Record<string, unknown>> {
  const wanted = Number(process.env.BENCH_WS_IDLE ?? 20_000)
  const perUser = 1000
  const server = await startParley({ AUTH_RATE_LIMIT_MAX: '100000000', WS_MAX_CONNECTIONS_PER_USER: String(perUser) })
  try {
    const { MONGODB_URI } = embeddedUrls(server)
    // Every process here may hold at most `ulimit -n` descriptors, the server
    // included (its Redis and database connections count too).
    const limit = Number(execSync('sh -c "ulimit -n"').toString().trim())
    const count = Math.min(wanted, limit - 200)
    const users = await seedUsers(MONGODB_URI, Math.ceil(count / perUser))
    const tokens: string[] = []
    for (const user of users) tokens.push((await api<{ accessToken: string }>(server.url, '/api/auth/login', { login: user.username, password: PASSWORD })).accessToken)
    const before = await rss(server.child.pid!)
    const perClient = Math.ceil(count / 2)
    // Two client processes, each with its own share of the tokens (≤ perUser sockets per user overall).
    const clients = [0, 1].map((i) => spawn(process.execPath, ['--import', tsx, join(root, 'bench/ws-idle-client.ts'), `${server.url.replace('http', 'ws')}/ws`, String(Math.min(perClient, count - i * perClient))], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, BENCH_TOKENS: tokens.filter((_, t) => t % 2 === i).join(',') }
    }))
    const opened = await Promise.all(clients.map(async (c) => {
      const [chunk] = await once(c.stdout!, 'data') as [Buffer]
      return Number(/open (\d+)/.exec(chunk.toString())?.[1] ?? 0)
    }))
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const after = await rss(server.child.pid!)
    for (const c of clients) c.kill('SIGTERM')
    await Promise.all(clients.map((c) => once(c, 'exit')))
    const open = opened.reduce((a, b) => a + b, 0)
    return {
      wanted,
      held: open,
      limitedBy: count < wanted ? `open-file limit ${limit} per process` : null,
      serverRssBeforeBytes: before,
      serverRssAfterBytes: after,
      rssPerSocketBytes: open > 0 ? Math.round((after - before) / open) : null
    }
  } finally {
    await server.stop()
  }
}
