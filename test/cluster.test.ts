// Redis Cluster with a failover: a primary dies while messages flow. It brings
// its own cluster (3 primaries, 3 replicas) so that killing a node cannot
// disturb other tests; the rest of the suite runs on a shared cluster in the
// cluster pass of npm test.
import t from 'tap'
import type { Cluster } from 'ioredis'
import { spawnSync } from 'node:child_process'
import { startRedisCluster } from '../scripts/embedded.js'
import { twoInstances } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect, type Frame } from './ws-client.js'

t.test('a primary fails over while two instances send and deliver: every acknowledged message stored once, in order, and delivered', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(cluster.stop)
  const [one, two] = await twoInstances(t, { REDIS_CLUSTER_NODES: cluster.nodes, SEND_RATE_LIMIT_MAX: 100000, RATE_LIMIT_MAX: 100000, WS_RATE_PER_SECOND: 1000, WS_RATE_BURST: 1000 })
  const [ada, bob] = [await createUser(one), await createUser(one)]
  const conversationId = await directConversation(one, ada, bob)
  const adaSocket = await connect(one, { token: ada.accessToken })
  const bobSocket = await connect(two, { token: bob.accessToken })

  // The primary that holds this conversation's numbers in the read model: the send path depends on it.
  const key = `${one.config.REDIS_PREFIX}:rm:conv:${conversationId}`
  const anyNode = cluster.nodes.split(',')[0]!.split(':')[1]!
  const slot = Number(spawnSync('redis-cli', ['-p', anyNode, 'cluster', 'keyslot', key], { encoding: 'utf8' }).stdout.trim())
  const victim = (one.redis as Cluster).slots[slot]![0]!
  const victimServer = cluster.servers.find((s) => `127.0.0.1:${s.port}` === victim)!
  t.ok(victimServer, `the primary of slot ${slot} is ${victim}`)

  // The client behaves like an outbox: a send that was not acknowledged is
  // retried with the same clientMsgId until it is.
  const TOTAL = 120
  const acked = new Map<string, number>() // clientMsgId → seq
  const refused = new Map<string, number>() // error code → count
  let killedAt = 0
  let ackedAfterKill = 0
  let slowest = 0
  for (let i = 1; i <= TOTAL; i++) {
    const clientMsgId = `fo-${i}`
    const deadline = Date.now() + 30000
    for (;;) {
      const asked = Date.now()
      const reply: Frame = await adaSocket.request('send', { conversationId, clientMsgId, text: `message ${i}` }, 30000)
      slowest = Math.max(slowest, Date.now() - asked)
      if (reply.type === 'ack') {
        acked.set(clientMsgId, reply.data.message.seq)
        if (killedAt > 0) ackedAfterKill++
        break
      }
      refused.set(reply.code ?? '?', (refused.get(reply.code ?? '?') ?? 0) + 1)
      if (Date.now() > deadline) throw new Error(`message ${i} not acknowledged within 30 s: ${JSON.stringify(reply)}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    if (i === 30) {
      process.kill(victimServer.pid, 'SIGKILL')
      killedAt = Date.now()
    }
    await new Promise((resolve) => setTimeout(resolve, 15))
  }
  t.comment(`failover: ${ackedAfterKill} sends acknowledged after the kill; refused meanwhile: ${JSON.stringify(Object.fromEntries(refused))}; ${Date.now() - killedAt} ms from the kill to the last ack; slowest reply ${slowest} ms`)
  t.ok([...refused.keys()].every((code) => code === 'SERVICE_UNAVAILABLE'), 'a send that could not be stored was refused as unavailable (retryable), never anything else')

  const seqs = [...acked.values()]
  t.equal(acked.size, TOTAL, 'every message acknowledged (after retries)')
  t.same([...seqs].sort((a, b) => a - b), Array.from({ length: TOTAL }, (_, i) => i + 1), 'gapless numbering 1..N, no number twice')
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'numbered in the order sent')

  const stored: Array<{ seq: number, clientMsgId: string }> = []
  let before = ''
  for (;;) {
    const res = await two.inject({ url: `/api/conversations/${conversationId}/messages?limit=100${before}`, headers: bob.auth })
    if (res.statusCode !== 200) throw new Error(`history: ${res.statusCode} ${res.body}`)
    const page = res.json()
    stored.push(...page.messages)
    if (!page.hasMore) break
    before = `&before=${Math.min(...page.messages.map((m: { seq: number }) => m.seq))}`
  }
  t.equal(stored.length, TOTAL, 'the database holds each message once')
  t.same(new Map(stored.map((m) => [m.clientMsgId, m.seq])), acked, 'with the acknowledged numbers')

  // Bob's view: live events plus a catch-up from what he last saw (the way a client resumes).
  const live = new Set(bobSocket.frames.filter((f) => f.type === 'message.created').map((f) => f.data.message.seq as number))
  const sync = await bobSocket.request('sync', { conversations: [{ conversationId, since: 0 }] })
  const caughtUp = new Set<number>(sync.data.conversations[0].changes.map((m: { seq: number }) => m.seq))
  t.comment(`bob: ${live.size} live, resync asked: ${bobSocket.frames.some((f) => f.type === 'resync')}`)
  t.same([...new Set([...live, ...caughtUp])].sort((a, b) => a - b), Array.from({ length: TOTAL }, (_, i) => i + 1), 'bob ends with exactly the stored history')
  t.ok([...live].every((seq) => seq >= 1 && seq <= TOTAL))

  await adaSocket.close()
  await bobSocket.close()
})
