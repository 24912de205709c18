// The embedded FerretDB on PostgreSQL: every field FerretDB indexes first gets
// a GIN index its equality queries can use (scripts/embedded.ts), checked with
// FerretDB's own explain, which returns PostgreSQL's plan.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MongoClient, ObjectId, type Document } from 'mongodb'
import { mongoEngine, startMongo, type EmbeddedServer } from '../scripts/embedded.js'

const dataDir = await mkdtemp(join(tmpdir(), 'parley-embedded-'))
await chmod(dataDir, 0o711) // PostgreSQL runs under an account of its own
t.teardown(() => rm(dataDir, { recursive: true, force: true }))

if (await mongoEngine(dataDir, {}) !== 'ferretdb-postgresql') {
  t.pass('PostgreSQL is not installed here: FerretDB runs on SQLite, which has no such indexes')
} else {
  /** The PostgreSQL index names in a FerretDB explain of `find` (its plan, as PostgreSQL's EXPLAIN JSON). */
  const indexesUsed = async (client: MongoClient, collection: string, filter: Document): Promise<string[]> => {
    const explained = await client.db('parley').command({ explain: { find: collection, filter } })
    return [...JSON.stringify(explained.queryPlanner).matchAll(/"Index Name":"([^"]+)"/g)].map((m) => m[1]!)
  }
  const psql = (server: EmbeddedServer, sql: string): string => {
    const run = spawnSync('psql', ['-d', server.postgresUrl!, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' })
    if (run.status !== 0) throw new Error(run.stderr)
    return run.stdout.trim()
  }
  const ginIndexes = (server: EmbeddedServer): string[] => psql(server, "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'parley_gin_%' ORDER BY 1").split('\n').filter(Boolean)

  const ids = Array.from({ length: 300 }, () => new ObjectId())
  const docs = ids.map((_id, i) => ({ _id, conversationId: `c${i % 30}`, memberIds: [`u${i % 7}`, `u${(i + 1) % 7}`], seq: i, note: `n${i}` }))

  t.test('equality on an indexed field, _id included, is served by an index, with the same answers', async (t) => {
    const server = await startMongo({ dataDir, engine: 'ferretdb-postgresql' })
    const client = new MongoClient(server.url)
    t.teardown(async () => { await client.close(); await server.stop() })
    await client.connect()
    const things = client.db('parley').collection('things')
    await things.createIndex({ conversationId: 1, seq: 1 })
    await things.createIndex({ memberIds: 1 })
    await things.insertMany(docs)

    t.equal(ginIndexes(server).length, 3, 'one for _id, conversationId and memberIds each')
    for (const filter of [{ _id: ids[17] }, { conversationId: 'c4' }, { memberIds: 'u3' }]) {
      t.match((await indexesUsed(client, 'things', filter)).join(), /parley_gin_/, `${Object.keys(filter)[0]} uses one`)
    }
    t.same(await indexesUsed(client, 'things', { note: 'n5' }), [], 'a field FerretDB does not index is still scanned')

    t.same((await things.findOne({ _id: ids[17] }))?.seq, 17)
    t.same((await things.find({ conversationId: 'c4' }).toArray()).map((d) => d.seq).sort((a, b) => a - b), docs.filter((d) => d.conversationId === 'c4').map((d) => d.seq))
    t.equal(await things.countDocuments({ memberIds: 'u3' }), docs.filter((d) => d.memberIds.includes('u3')).length, 'an array field matches as MongoDB does: any element')
    t.equal(await things.countDocuments({ conversationId: 'c4', seq: { $gte: 100 } }), docs.filter((d) => d.conversationId === 'c4' && d.seq >= 100).length)
    const updated = await things.updateOne({ _id: ids[18] }, { $set: { note: 'changed' } })
    t.equal(updated.modifiedCount, 1)
    t.equal((await things.findOne({ _id: ids[18] }))?.note, 'changed')
  })

  t.test('a cluster made without them (an older Parley) gets them at its next start', async (t) => {
    let server = await startMongo({ dataDir, engine: 'ferretdb-postgresql' })
    t.teardown(() => server.stop())
    for (const name of ginIndexes(server)) psql(server, `DROP INDEX parley."${name}"`)
    t.same(ginIndexes(server), [])
    await server.stop()

    server = await startMongo({ dataDir, engine: 'ferretdb-postgresql' })
    t.equal(ginIndexes(server).length, 3)
    const client = new MongoClient(server.url)
    t.teardown(() => client.close())
    t.match((await indexesUsed(client, 'things', { conversationId: 'c4' })).join(), /parley_gin_/)
    t.equal(await client.db('parley').collection('things').countDocuments({ conversationId: 'c4' }), 10)
  })
}
