// A dependency that goes away: every API request is a fast 503 with
// retry-after (never a 500, never a wait for reconnect retries), and shutting
// down does not hang on the dead dependency.
import t, { type Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { build } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { startMongo, startRedis } from '../scripts/embedded.js'

async function timed (app: FastifyInstance, method: 'GET' | 'POST', url: string, headers: Record<string, string> = {}, payload?: object) {
  const started = Date.now()
  const res = await app.inject({ method, url, headers, payload })
  return { res, ms: Date.now() - started }
}

function assertUnavailable (t: Test, { res, ms }: Awaited<ReturnType<typeof timed>>, maxMs: number, what: string): void {
  t.equal(res.statusCode, 503, `${what}: 503`)
  t.equal(res.json().code, 'SERVICE_UNAVAILABLE', `${what}: SERVICE_UNAVAILABLE`)
  t.ok(Number(res.headers['retry-after']) > 0, `${what}: retry-after`)
  t.ok(ms <= maxMs, `${what}: answered in ${ms} ms (≤ ${maxMs})`)
}

t.test('Redis down: fast 503 SERVICE_UNAVAILABLE on every route, and shutdown does not hang', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await build(t, { REDIS_URL: redis.url })
  const ada = await createUser(app)
  const bob = await createUser(app)
  const conversationId = await directConversation(app, ada, bob)
  await redis.stop()
  await new Promise((resolve) => setTimeout(resolve, 200))

  assertUnavailable(t, await timed(app, 'GET', '/api/users/me', ada.auth), 500, 'GET /api/users/me')
  assertUnavailable(t, await timed(app, 'POST', '/api/auth/login', {}, { login: ada.username, password: ada.password }), 500, 'POST /api/auth/login')
  assertUnavailable(t, await timed(app, 'POST', `/api/conversations/${conversationId}/messages`, ada.auth, { clientMsgId: 'down', text: 'x' }), 500, 'send')
  assertUnavailable(t, await timed(app, 'GET', '/api/conversations', ada.auth), 500, 'conversation list')
  const ready = await app.inject({ method: 'GET', url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json().message, /redis/)

  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, `closed in ${Date.now() - started} ms, well within the 8 s grace`)
})

t.test('MongoDB down: 503 SERVICE_UNAVAILABLE, the first within the selection timeout, the rest at once', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'parley-outage-'))
  const mongo = await startMongo({ dataDir })
  t.teardown(async () => { await mongo.stop(); await rm(dataDir, { recursive: true, force: true }) })
  const app = await build(t, { MONGODB_URI: mongo.url })
  const ada = await createUser(app)
  await mongo.stop()

  assertUnavailable(t, await timed(app, 'GET', '/api/users/me', ada.auth), 3000, 'first request after the loss')
  assertUnavailable(t, await timed(app, 'GET', '/api/users/me', ada.auth), 100, 'GET /api/users/me, loss known')
  assertUnavailable(t, await timed(app, 'POST', '/api/auth/login', {}, { login: ada.username, password: ada.password }), 100, 'POST /api/auth/login, loss known')
  const ready = await app.inject({ method: 'GET', url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json().message, /mongodb/)
})
