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
  // Requests should fail in seconds, not the driver's default 30, while the
  // database is unreachable; a timeout in the URI still wins.
  const timeoutInUri = /[?&]serverSelectionTimeoutMS=/i.test(MONGODB_URI)
  const client = new MongoClient(MONGODB_URI, {
    appName: 'parley',
    maxPoolSize: 50,
    ...(timeoutInUri ? {} : { serverSelectionTimeoutMS: 5000 })
  })
  await client.connect()
  const db = client.db(MONGODB_DB)
  fastify.decorate('mongo', { client, db })
  fastify.addHook('onClose', async () => { await client.close() })

  const started = Date.now()
  await ensureIndexes(db)
  fastify.log.debug({ ms: Date.now() - started }, 'mongodb indexes ensured')
}, { name: 'db', dependencies: ['config'] })
