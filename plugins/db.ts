import fp from 'fastify-plugin'
import { MongoClient, type Db } from 'mongodb'
import { ensureIndexes } from '../services/collections.js'

declare module 'fastify' {
  interface FastifyInstance {
    mongo: { client: MongoClient, db: Db }
  }
}

export default fp(async (fastify) => {
  const { MONGODB_URI, MONGODB_DB } = fastify.config
  // While the database is unreachable a request must fail fast (503), not wait
  // the driver's default 30 s: the first request to notice waits at most the
  // selection timeout, later ones are refused at once (plugins/availability.ts)
  // until a heartbeat finds the server again. Settings in the URI still win.
  const inUri = (name: string): boolean => new RegExp(`[?&]${name}=`, 'i').test(MONGODB_URI)
  const client = new MongoClient(MONGODB_URI, {
    appName: 'parley',
    maxPoolSize: 50,
    ...(inUri('serverSelectionTimeoutMS') ? {} : { serverSelectionTimeoutMS: 2000 }),
    ...(inUri('heartbeatFrequencyMS') ? {} : { heartbeatFrequencyMS: 2000 })
  })
  await client.connect()
  const db = client.db(MONGODB_DB)
  fastify.decorate('mongo', { client, db })
  fastify.addHook('onClose', async () => { await client.close() })

  const started = Date.now()
  await ensureIndexes(db)
  fastify.log.debug({ ms: Date.now() - started }, 'mongodb indexes ensured')
}, { name: 'db', dependencies: ['config'] })
