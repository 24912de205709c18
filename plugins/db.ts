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
  const client = new MongoClient(MONGODB_URI, {
    appName: 'parley',
    serverSelectionTimeoutMS: 5000,
    maxPoolSize: 50
  })
  await client.connect()
  const db = client.db(MONGODB_DB)
  fastify.decorate('mongo', { client, db })
  fastify.addHook('onClose', async () => { await client.close() })

  const started = Date.now()
  await ensureIndexes(db)
  fastify.log.debug({ ms: Date.now() - started }, 'mongodb indexes ensured')
}, { name: 'db', dependencies: ['config'] })
