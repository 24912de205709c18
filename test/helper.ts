// Boots the app exactly as server.ts does (buildApp), against the run's shared
// servers, with a database and a Redis key prefix of its own that are removed
// when the test ends.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { buildApp } from '../app.js'
import type { ConfigInput } from '../schemas/config.js'
import { provideServers } from '../scripts/embedded.js'

interface Test {
  teardown: (fn: () => unknown) => void
}

let shared: Promise<{ MONGODB_URI: string, REDIS_URL: string }> | undefined

/** The run's servers: from npm test (env), or started once for this process when a file is run alone. */
export function testServers (): Promise<{ MONGODB_URI: string, REDIS_URL: string }> {
  shared ??= (async () => {
    if (process.env.MONGODB_URI && process.env.REDIS_URL) return { MONGODB_URI: process.env.MONGODB_URI, REDIS_URL: process.env.REDIS_URL }
    const servers = await provideServers(process.env)
    process.once('beforeExit', () => { servers.stop().catch(() => {}) })
    return servers
  })()
  return shared
}

export const uniqueId = (): string => randomBytes(6).toString('hex')

/**
 * Two instances of the app on one Redis and one database, sharing their
 * secrets, as behind a load balancer.
 */
export async function twoInstances (t: Test, overrides: ConfigInput = {}): Promise<[FastifyInstance, FastifyInstance]> {
  const one = await build(t, overrides)
  const { MONGODB_DB, REDIS_PREFIX, JWT_SECRET, HASH_SECRET } = one.config
  const two = await build(t, { ...overrides, MONGODB_DB, REDIS_PREFIX, JWT_SECRET, HASH_SECRET })
  return [one, two]
}

export async function build (t: Test, overrides: ConfigInput = {}): Promise<FastifyInstance> {
  const { MONGODB_URI, REDIS_URL } = await testServers()
  const id = uniqueId()
  const mailDir = await mkdtemp(join(tmpdir(), 'parley-mail-'))
  const app = await buildApp({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    MONGODB_URI,
    REDIS_URL,
    MONGODB_DB: `test_${id}`,
    REDIS_PREFIX: `test.${id}`,
    MAIL_CAPTURE_DIR: mailDir,
    EMAIL_BACKOFF_MS: 50,
    ...overrides
  })
  t.teardown(async () => {
    const prefix = app.config.REDIS_PREFIX
    await app.mongo.db.dropDatabase().catch(() => {})
    await app.close()
    await deleteKeys(REDIS_URL, `${prefix}:*`)
    await rm(mailDir, { recursive: true, force: true })
  })
  return app
}

async function deleteKeys (url: string, pattern: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 })
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
      if (keys.length > 0) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } catch {
    // The Redis of this test may be gone already (fault tests stop their own).
  } finally {
    redis.disconnect()
  }
}

/** Keys of this app's Redis namespace matching `pattern`, without the prefix (as app.redis takes them). */
export async function redisKeys (app: FastifyInstance, pattern: string): Promise<string[]> {
  const prefix = `${app.config.REDIS_PREFIX}:`
  // KEYS patterns are not prefixed by ioredis; the keys it returns are.
  return (await app.redis.keys(`${prefix}${pattern}`)).map((key) => key.slice(prefix.length))
}
