// The write behind of conversations' activity (services/conversation-activity.ts)
// against the run's real database, with the driver's command monitoring
// counting what reaches it.
import t, { type Test } from 'tap'
import { MongoClient, ObjectId, type CommandStartedEvent } from 'mongodb'
import { createConversationActivity } from '../services/conversation-activity.js'
import type { ConversationDoc } from '../services/conversations.js'
import { testServers, uniqueId } from './helper.js'

async function setUp (t: Test, count: number) {
  const { MONGODB_URI } = await testServers()
  const client = new MongoClient(MONGODB_URI, { monitorCommands: true })
  await client.connect()
  const db = client.db(`test_${uniqueId()}`)
  t.teardown(async () => { await db.dropDatabase().catch(() => {}); await client.close() })
  const conversations = db.collection<ConversationDoc>('conversations')
  const now = new Date()
  const docs = Array.from({ length: count }, () => ({
    _id: new ObjectId(), type: 'group', title: 't', memberIds: [], members: [], lastSeq: 0, changeSeq: 0, version: 1, lastSentSeq: {}, createdAt: now, updatedAt: now, lastActivityAt: now
  }) as unknown as ConversationDoc)
  await conversations.insertMany(docs)
  const updates: number[] = []
  client.on('commandStarted', (event: CommandStartedEvent) => {
    if (event.commandName === 'update') updates.push((event.command.updates as unknown[]).length)
  })
  /** The state after message `seq`, as a send leaves it in the read model. */
  const after = (doc: ConversationDoc, seq: number): ConversationDoc => ({
    ...doc, lastSeq: seq, changeSeq: seq, version: 1, lastActivityAt: new Date(now.getTime() + seq), lastMessage: { seq, preview: `m${seq}` }
  }) as unknown as ConversationDoc
  return { conversations, docs, updates, after }
}

t.test('changes within the delay become one write per conversation', async (t) => {
  const { conversations, docs, updates, after } = await setUp(t, 3)
  // A delay no pause of this process under a loaded test run can outlast while the 60 changes are recorded.
  const activity = createConversationActivity({ conversations, delayMs: 1500 })
  for (let seq = 1; seq <= 20; seq++) for (const doc of docs) await activity.record(after(doc, seq))
  t.equal(activity.waiting, 3, 'three conversations wait')
  t.same(updates, [], 'nothing written before the delay')
  for (let i = 0; i < 200 && activity.waiting > 0; i++) await new Promise((resolve) => setTimeout(resolve, 25))
  // Usually one command of 3; a pause of this process between the first changes can split it.
  t.equal(updates.reduce((sum, n) => sum + n, 0), 3, '60 changes of 3 conversations: one update per conversation')
  const stored = await conversations.find({}).sort({ _id: 1 }).toArray()
  t.same(stored.map((doc) => [doc.lastSeq, doc.changeSeq, doc.lastMessage?.seq]), [[20, 20, 20], [20, 20, 20], [20, 20, 20]], 'each holds its newest state')
})

t.test('many conversations due together go out in bulk writes of at most 8', async (t) => {
  const { conversations, docs, updates, after } = await setUp(t, 20)
  // Due together: all 20 are recorded before any is due (flushAll makes them due at once).
  const activity = createConversationActivity({ conversations, delayMs: 60_000 })
  for (const doc of docs) await activity.record(after(doc, 1))
  await activity.flushAll()
  // Two bulks are in flight at once, and a bulk that needs a new pooled
  // connection can start after the one that follows it: sizes, not order.
  t.same([...updates].sort((a, b) => b - a), [8, 8, 4])
  t.equal(await conversations.countDocuments({ lastSeq: 1 }), 20)
})

t.test('an older state never overwrites a newer one, from this instance or another', async (t) => {
  const { conversations, docs, after } = await setUp(t, 1)
  const doc = docs[0]!
  // Another instance already wrote message 7.
  await conversations.updateOne({ _id: doc._id }, { $set: { lastSeq: 7, changeSeq: 7, lastMessage: { seq: 7, preview: 'm7' } as unknown as ConversationDoc['lastMessage'] } })
  const activity = createConversationActivity({ conversations, delayMs: 0 })
  await activity.record(after(doc, 5))
  await activity.record(after(doc, 3))
  await activity.flushAll()
  const stored = (await conversations.findOne({ _id: doc._id }))!
  t.same([stored.lastSeq, stored.changeSeq, stored.lastMessage?.seq], [7, 7, 7])
})

t.test('flushAll writes at once, without waiting for the delay', async (t) => {
  const { conversations, docs, updates, after } = await setUp(t, 2)
  const activity = createConversationActivity({ conversations, delayMs: 60_000 })
  for (const doc of docs) await activity.record(after(doc, 4))
  const started = performance.now()
  await activity.flushAll()
  t.ok(performance.now() - started < 5000, 'did not wait for the minute')
  t.equal(activity.waiting, 0)
  t.same(updates, [2])
  t.same((await conversations.find({}).sort({ _id: 1 }).toArray()).map((doc) => doc.lastSeq), [4, 4])
})

t.test('a change made while its conversation is being written is written next', async (t) => {
  const { conversations, docs, updates, after } = await setUp(t, 1)
  const doc = docs[0]!
  const activity = createConversationActivity({ conversations, delayMs: 0 })
  await activity.record(after(doc, 1))
  // The first write is in flight now (delay 0): this one must follow it, not join it or be lost.
  await activity.record(after(doc, 2))
  await activity.flushAll()
  t.equal((await conversations.findOne({ _id: doc._id }))!.lastSeq, 2)
  t.equal(updates.length, 2, 'two writes, one after the other')
})

t.test('past maxPending conversations waiting, writers are held back until writes make room', async (t) => {
  const { conversations, docs, after } = await setUp(t, 4)
  const activity = createConversationActivity({ conversations, delayMs: 60_000, maxPending: 2 })
  await activity.record(after(docs[0]!, 1))
  await activity.record(after(docs[1]!, 1))
  let thirdRecorded = false
  const third = activity.record(after(docs[2]!, 1)).then(() => { thirdRecorded = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(thirdRecorded, 'the third waits while two are waiting')
  await activity.record(after(docs[0]!, 2))
  t.notOk(thirdRecorded, 'a conversation already waiting is not held back: its change was taken while the third still waits')
  // Writing the two waiting makes room.
  await activity.flushAll()
  await third
  t.ok(thirdRecorded)
  await activity.flushAll()
  t.same((await conversations.find({}).sort({ _id: 1 }).toArray()).map((doc) => doc.lastSeq), [2, 1, 1, 0])
})
