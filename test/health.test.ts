import t from 'tap'
import { build, testServers } from './helper.js'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../app.js'
import { freePort, startMongo, startRedis } from '../scripts/embedded.js'

async function pollReady (app: FastifyInstance): Promise<number> {
  const deadline = Date.now() + 20000
  let status = 0
  while (Date.now() < deadline) {
    status = (await app.inject('/health/ready')).statusCode
    if (status === 200) break
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return status
}

t.test('GET /health/live', async (t) => {
  const app = await build(t)
  const res = await app.inject('/health/live')
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('GET /health/ready with both servers up', async (t) => {
  const app = await build(t)
  const res = await app.inject('/health/ready')
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok', checks: { mongodb: 'up', redis: 'up' } })
})

t.test('ready turns 503 while Redis is down and back to 200 when it returns', async (t) => {
  // A Redis of this test's own, so stopping it disturbs no other test.
  let redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await build(t, { REDIS_URL: redis.url })

  t.equal((await app.inject('/health/ready')).statusCode, 200)

  await redis.stop()
  const down = await app.inject('/health/ready')
  t.equal(down.statusCode, 503)
  t.same(down.json(), { statusCode: 503, code: 'NOT_READY', error: 'Service Unavailable', message: 'Not ready: redis is down' })

  redis = await startRedis({ port: redis.port })
  t.equal(await pollReady(app), 200, 'ready again without a restart')
})

t.test('ready names MongoDB while it is down and recovers with it', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'parley-mongo-'))
  await chmod(dataDir, 0o711) // so the embedded default (PostgreSQL, under its own account) can run in it
  let mongo = await startMongo({ dataDir })
  t.teardown(async () => { await mongo.stop(); await rm(dataDir, { recursive: true, force: true }) })
  const app = await build(t, { MONGODB_URI: mongo.url })
  t.equal((await app.inject('/health/ready')).statusCode, 200)

  await mongo.stop()
  const down = await app.inject('/health/ready')
  t.equal(down.statusCode, 503)
  t.equal(down.json().message, 'Not ready: mongodb is down')

  mongo = await startMongo({ dataDir, port: mongo.port })
  t.equal(await pollReady(app), 200, 'ready again without a restart')
})

t.test('boot fails clearly when MongoDB is unreachable, leaving nothing open', async (t) => {
  const { REDIS_URL } = await testServers()
  const port = await freePort()
  await t.rejects(buildApp({ NODE_ENV: 'test', LOG_LEVEL: 'silent', MONGODB_URI: `mongodb://127.0.0.1:${port}/`, REDIS_URL }),
    /ECONNREFUSED|Server selection timed out/)
})
