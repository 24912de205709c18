// Inserts of several callers sharing one write (services/group-insert.ts),
// against the run's real database, with the driver's command monitoring
// counting the inserts that reach it.
import t, { type Test } from 'tap'
import { MongoClient, ObjectId, type CommandStartedEvent } from 'mongodb'
import { createGroupInsert } from '../services/group-insert.js'
import { testServers, uniqueId } from './helper.js'

interface Doc { _id: ObjectId, conversationId: string, seq: number }

async function setUp (t: Test) {
  const { MONGODB_URI } = await testServers()
  const client = new MongoClient(MONGODB_URI, { monitorCommands: true })
  await client.connect()
  const db = client.db(`test_${uniqueId()}`)
  t.teardown(async () => { await db.dropDatabase().catch(() => {}); await client.close() })
  const collection = db.collection<Doc>('messages')
  await collection.createIndexes([{ key: { conversationId: 1, seq: 1 }, name: 'conversation_seq_unique', unique: true }])
  const inserts: number[] = []
  client.on('commandStarted', (event: CommandStartedEvent) => {
    if (event.commandName === 'insert') inserts.push((event.command.documents as unknown[]).length)
  })
  const docs = (conversationId: string, from: number, count: number): Doc[] =>
    Array.from({ length: count }, (_, i) => ({ _id: new ObjectId(), conversationId, seq: from + i }))
  const stored = async (conversationId: string): Promise<number[]> =>
    (await collection.find({ conversationId }).toArray()).map((d) => d.seq).sort((a, b) => a - b)
  return { collection, inserts, docs, stored }
}

t.test('inserts asked for while one is in flight share the next write, in the order asked', async (t) => {
  const { collection, inserts, docs, stored } = await setUp(t)
  const insert = createGroupInsert(collection)
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => insert(docs(`c${i}`, 1, 1 + (i % 3)))))
  t.same(results, Array.from({ length: 20 }, (_, i) => 1 + (i % 3)), 'each caller is told all its documents were stored')
  t.same(inserts, [1, 38], 'the first goes out at once; the 19 that queued behind it (38 documents) take one insert')
  for (let i = 0; i < 20; i++) t.same(await stored(`c${i}`), Array.from({ length: 1 + (i % 3) }, (_, k) => 1 + k))
})

t.test('a batch is bounded by maxDocs, and a caller larger than it still goes out whole', async (t) => {
  const { collection, inserts, docs } = await setUp(t)
  const insert = createGroupInsert(collection, { maxDocs: 5 })
  const results = await Promise.all([insert(docs('a', 1, 1)), insert(docs('b', 1, 3)), insert(docs('c', 1, 3)), insert(docs('d', 1, 7)), insert(docs('e', 1, 2))])
  t.same(results, [1, 3, 3, 7, 2])
  t.same(inserts, [1, 3, 3, 7, 2], 'no write holds more than five documents unless one caller asked for more')
})

t.test('a duplicate key stops only its own caller there: those before are stored, those after go into the next write', async (t) => {
  const { collection, inserts, docs, stored } = await setUp(t)
  await collection.insertOne({ _id: new ObjectId(), conversationId: 'b', seq: 3 })
  inserts.length = 0
  const insert = createGroupInsert(collection)
  const results = await Promise.all([insert(docs('first', 1, 1)), insert(docs('a', 1, 2)), insert(docs('b', 1, 4)), insert(docs('c', 1, 2)), insert(docs('d', 1, 1))])
  t.same(results, [1, 2, 2, 2, 1], 'b was stored up to the taken number (seq 1 and 2), as an ordered insert of its own would')
  t.same(inserts, [1, 9, 3], 'one write for the four that queued, stopped at b; c and d went into the next')
  t.same(await stored('a'), [1, 2])
  t.same(await stored('b'), [1, 2, 3], 'nothing of b after the duplicate')
  t.same(await stored('c'), [1, 2])
  t.same(await stored('d'), [1])
})

t.test('a single document that is a duplicate stores nothing and leaves the others alone', async (t) => {
  const { collection, docs, stored } = await setUp(t)
  await collection.insertOne({ _id: new ObjectId(), conversationId: 'x', seq: 1 })
  const insert = createGroupInsert(collection)
  t.same(await Promise.all([insert(docs('x', 1, 1)), insert(docs('y', 1, 1))]), [0, 1])
  t.same(await stored('y'), [1])
})

t.test('an error that is not a duplicate key fails the callers not stored, and the next insert works', async (t) => {
  const { collection, docs, stored } = await setUp(t)
  const insert = createGroupInsert(collection)
  // A field name starting with `$` is refused by the server.
  const refused = { ...docs('bad', 1, 1)[0]!, $bad: 1 } as unknown as Doc
  const results = await Promise.allSettled([insert(docs('first', 1, 1)), insert(docs('ok', 1, 1)), insert([refused]), insert(docs('after', 1, 1))])
  t.same(results.map((r) => r.status === 'fulfilled' ? r.value : 'rejected'), [1, 1, 'rejected', 'rejected'])
  t.same(await stored('ok'), [1], 'the caller before the failure is stored')
  t.same(await stored('after'), [], 'the one after it was not tried')
  t.equal(await insert(docs('later', 1, 2)), 2)
})
