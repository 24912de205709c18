// Seeds a realistic data set straight into the database of a real server
// (BENCH_USERS users, BENCH_CONVERSATIONS direct conversations, BENCH_MESSAGES
// messages; 1k / 10k / 200k by default), signs some users in over HTTP, then
// loads the conversation list, message history and send with Bearer tokens,
// next to a bare Fastify hello-world measured in the same run.
import { ObjectId, MongoClient } from 'mongodb'
import { hashPassword } from '../services/passwords.js'
import type { UserDoc } from '../services/users.js'
import type { ConversationDoc, MembershipDoc } from '../services/conversations.js'
import { messageIdFor, type MessageDoc } from '../services/messages.js'
import { embeddedUrls, measure, ratio, startHello, startParley, type Started } from './lib.js'

const USERS = Number(process.env.BENCH_USERS ?? 1000)
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 10_000)
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000)
const SIGNED_IN = 50
const PASSWORD = 'bench password 1'

interface Seeded { users: UserDoc[], conversationsByUser: Map<string, string[]> }

async function seed (mongoUri: string): Promise<Seeded> {
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
  const batch: MessageDoc[] = []
  const flush = async () => { if (batch.length > 0) await db.collection<MessageDoc>('messages').insertMany(batch.splice(0), { ordered: false }) }
  for (const [n, c] of conversations.entries()) {
    const id = c._id.toHexString()
    for (let seq = 1; seq <= perConversation; seq++) {
      const createdAt = new Date(now - 3_600_000 + n * 10 + seq)
      const senderId = c.memberIds[seq % 2]!
      batch.push({ _id: messageIdFor(id, seq), conversationId: id, seq, changeSeq: seq, senderId, clientMsgId: `seed-${seq}`, text: `Seeded message ${seq} in conversation ${n}, long enough to look like chat.`, attachments: [], reactions: [], createdAt, editedAt: null, deletedAt: null })
      c.lastSeq = seq
      c.changeSeq = seq
      c.lastActivityAt = createdAt
      c.lastMessage = { seq, senderId, preview: `Seeded message ${seq}`, createdAt, deleted: false }
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

  return { users, conversationsByUser }
}

async function signIn (parley: Started, users: UserDoc[]): Promise<Array<{ token: string, userId: string }>> {
  const out: Array<{ token: string, userId: string }> = []
  for (const user of users.slice(0, SIGNED_IN)) {
    const res = await fetch(`${parley.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: user.username, password: PASSWORD }) })
    if (res.status !== 200) throw new Error(`login: ${res.status} ${await res.text()}`)
    out.push({ token: ((await res.json()) as { accessToken: string }).accessToken, userId: user._id.toHexString() })
  }
  return out
}

export async function chatScenario (): Promise<Record<string, unknown>> {
  const hello = await startHello()
  const parley = await startParley({ AUTH_RATE_LIMIT_MAX: '100000000' })
  try {
    const mongoUri = embeddedUrls(parley).MONGODB_URI
    const seedStarted = Date.now()
    const { users, conversationsByUser } = await seed(mongoUri)
    const seedSeconds = Math.round((Date.now() - seedStarted) / 100) / 10
    const signedIn = await signIn(parley, users)
    const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!
    let counter = 0

    const baseline = await measure({ url: hello.url })
    const list = await measure({
      url: parley.url,
      requests: [{ method: 'GET', path: '/api/conversations?limit=20', setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${pick(signedIn).token}` } }) }]
    })
    const history = await measure({
      url: parley.url,
      requests: [{
        method: 'GET',
        path: '/',
        setupRequest: (req) => {
          const user = pick(signedIn)
          return { ...req, path: `/api/conversations/${pick(conversationsByUser.get(user.userId)!)}/messages?limit=50`, headers: { authorization: `Bearer ${user.token}` } }
        }
      }]
    })
    const sendMessage = await measure({
      url: parley.url,
      requests: [{
        method: 'POST',
        path: '/',
        setupRequest: (req) => {
          const user = pick(signedIn)
          return {
            ...req,
            path: `/api/conversations/${pick(conversationsByUser.get(user.userId)!)}/messages`,
            headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ clientMsgId: `bench-${process.pid}-${counter++}`, text: 'benchmark message' })
          }
        }
      }]
    })
    return {
      dataSet: { users: USERS, conversations: CONVERSATIONS, messages: Math.floor(MESSAGES / CONVERSATIONS) * CONVERSATIONS, seedSeconds },
      baseline: { name: 'bare Fastify hello-world', ...baseline },
      conversationList: { name: 'GET /api/conversations?limit=20', ...list, ratio: ratio(list.requestsPerSecond, baseline.requestsPerSecond) },
      history: { name: 'GET /api/conversations/:id/messages?limit=50', ...history, ratio: ratio(history.requestsPerSecond, baseline.requestsPerSecond) },
      send: { name: 'POST /api/conversations/:id/messages', ...sendMessage, ratio: ratio(sendMessage.requestsPerSecond, baseline.requestsPerSecond) }
    }
  } finally {
    await Promise.allSettled([hello.stop(), parley.stop()])
  }
}
