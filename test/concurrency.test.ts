// Two app instances on one Redis and one database, as in production behind a
// load balancer: numbering, idempotency and direct-conversation creation must
// hold across them.
import t from 'tap'
import type { CommandStartedEvent } from 'mongodb'
import { twoInstances } from './helper.js'
import { createUser } from './accounts.js'
import { messageIdFor } from '../services/messages.js'

t.test('200 parallel sends into one conversation from two instances give seq 1..200 exactly', async (t) => {
  const [one, two] = await twoInstances(t)
  const [ada, bob] = [await createUser(one), await createUser(one)]
  const conv = (await one.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json()
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => {
    const app = i % 2 === 0 ? one : two
    const user = i % 3 === 0 ? bob : ada
    return app.inject({ method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: user.auth, payload: { clientMsgId: `p${i}`, text: `parallel ${i}` } })
  }))
  t.same(results.map((r) => r.statusCode).filter((s) => s !== 201), [], 'every send succeeded')
  const seqs = results.map((r) => r.json().seq as number).sort((a, b) => a - b)
  t.same(seqs, Array.from({ length: 200 }, (_, i) => i + 1), 'no gap, no duplicate')
  const stored = await one.mongo.db.collection('messages').find({ conversationId: conv.id }).sort({ seq: 1 }).toArray()
  t.equal(stored.length, 200)
  t.same(stored.map((m) => m.seq), seqs)
  const view = (await two.inject({ url: `/api/conversations/${conv.id}`, headers: ada.auth })).json()
  t.equal(view.lastSeq, 200)
  t.equal(new Set(stored.map((m) => m.changeSeq)).size, 200, 'every change has its own number')
})

t.test('sends queued for one conversation share one insert: resends and a taken number among them are answered as alone', async (t) => {
  const [one, two] = await twoInstances(t)
  const [ada, bob] = [await createUser(one), await createUser(one)]
  const conv = (await one.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json()
  const send = (clientMsgId: string, text: string, user = ada) => one.inject({ method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: user.auth, payload: { clientMsgId, text } })
  t.equal((await send('first', 'first')).statusCode, 201)
  // A sender stopped after storing message 2 and before recording it: the
  // turn's insert collides with it half-way and is repaired past it.
  const messages = one.mongo.db.collection('messages')
  await messages.insertOne({ _id: messageIdFor(conv.id, 2), conversationId: conv.id, seq: 2, changeSeq: 2, senderId: bob.id, clientMsgId: 'stranded', text: 'stranded', attachments: [], reactions: [], createdAt: new Date(), editedAt: null, deletedAt: null })

  // The driver's own command monitoring counts what reaches the database.
  const client = one.mongo.client
  const monitoring = client as unknown as { monitorCommands: boolean }
  const inserts: number[] = []
  const count = (e: CommandStartedEvent): void => { if (e.commandName === 'insert' && e.command.insert === 'messages') inserts.push((e.command.documents as unknown[]).length) }
  // (Only from connections made after it is asked for.)
  monitoring.monitorCommands = true
  await client.close()
  await client.connect()
  client.on('commandStarted', count)
  t.teardown(() => { client.off('commandStarted', count) })
  const results = await Promise.all([
    ...Array.from({ length: 40 }, (_, i) => send(`b${i}`, `batch ${i}`, i % 2 ? ada : bob)),
    send('b3', 'batch 3', ada), // a resend of one in the same turn
    send('first', 'first') // a resend of one stored long before
  ])
  t.same(results.slice(0, 40).map((r) => r.statusCode), Array(40).fill(201), 'every new send created')
  t.same(results.slice(40).map((r) => r.statusCode), [200, 200], 'the resends return what was stored')
  t.equal(results[40]!.json().id, results[3]!.json().id)
  t.equal(results[41]!.json().seq, 1)
  const seqs = results.slice(0, 40).map((r) => r.json().seq as number).sort((a, b) => a - b)
  t.same(seqs, Array.from({ length: 40 }, (_, i) => i + 3), 'numbered after the stranded message 2, no gap, no duplicate')
  t.ok(inserts.length < 10, `40 sends took ${inserts.length} inserts`, { inserts })
  t.ok(Math.max(...inserts) > 1, 'several messages in one insert', { inserts })
  const stored = await messages.find({ conversationId: conv.id }).sort({ seq: 1 }).toArray()
  t.same(stored.map((m) => m.seq), Array.from({ length: 42 }, (_, i) => i + 1), 'stored once each, in order')
  t.equal(stored[1]!.clientMsgId, 'stranded')
  const view = (await two.inject({ url: `/api/conversations/${conv.id}`, headers: ada.auth })).json()
  t.equal(view.lastSeq, 42)
})

t.test('parallel resends of one clientMsgId on two instances store one message', async (t) => {
  const [one, two] = await twoInstances(t)
  const [ada, bob] = [await createUser(one), await createUser(one)]
  const conv = (await one.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json()
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? one : two).inject({
    method: 'POST', url: `/api/conversations/${conv.id}/messages`, headers: ada.auth, payload: { clientMsgId: 'retry-me', text: 'only once' }
  })))
  t.equal(results.filter((r) => r.statusCode === 201).length, 1, 'one created')
  t.equal(results.filter((r) => r.statusCode === 200).length, 29, 'the rest return it')
  t.equal(new Set(results.map((r) => r.json().id)).size, 1, 'all the same message')
  t.equal(await one.mongo.db.collection('messages').countDocuments({ conversationId: conv.id }), 1)
})

t.test('parallel direct creates on two instances give one conversation', async (t) => {
  const [one, two] = await twoInstances(t)
  const [ada, bob] = [await createUser(one), await createUser(one)]
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).inject({
    method: 'POST', url: '/api/conversations', headers: (i % 4 < 2 ? ada : bob).auth, payload: { type: 'direct', userId: i % 4 < 2 ? bob.id : ada.id }
  })))
  t.equal(results.filter((r) => r.statusCode === 201).length, 1, 'one created', { statuses: results.map((r) => `${r.statusCode}:${r.body.slice(0, 120)}`) })
  t.equal(results.filter((r) => r.statusCode === 200).length, 19, 'the rest found it', { statuses: results.map((r) => `${r.statusCode}:${r.body.slice(0, 120)}`) })
  t.equal(new Set(results.map((r) => r.json().id)).size, 1)
  t.equal(await one.mongo.db.collection('conversations').countDocuments({ type: 'direct' }), 1)
  t.equal(await one.mongo.db.collection('memberships').countDocuments(), 2)
})
