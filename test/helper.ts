// Boots the app exactly as server.ts does (buildApp), against the run's shared
// servers, with a database and a Redis key prefix of its own that are removed
// when the test ends.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { openRedis, primaries } from '../services/redis-client.js'
import { buildApp } from '../app.js'
import type { ConfigInput } from '../schemas/config.js'
import { provideServers } from '../scripts/embedded.js'

interface Test {
  teardown: (fn: () => unknown) => void
}

interface Servers { MONGODB_URI: string, REDIS_URL: string, REDIS_CLUSTER_NODES: string }
let shared: Promise<Servers> | undefined

/**
 * The run's servers: from npm test (env), or started once for this process
 * when a file is run alone. With REDIS_CLUSTER_NODES (the cluster pass of
 * npm test) apps run on that Redis Cluster; REDIS_URL is then its first seed.
 */
export function testServers (): Promise<Servers> {
  shared ??= (async () => {
    const REDIS_CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES ?? ''
    if (process.env.MONGODB_URI && process.env.REDIS_URL) return { MONGODB_URI: process.env.MONGODB_URI, REDIS_URL: process.env.REDIS_URL, REDIS_CLUSTER_NODES }
    const servers = await provideServers(process.env)
    process.once('beforeExit', () => { servers.stop().catch(() => {}) })
    return { ...servers, REDIS_CLUSTER_NODES }
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
  const servers = await testServers()
  // A test that brings its own Redis or Redis Cluster gets exactly that one.
  const own = overrides.REDIS_CLUSTER_NODES !== undefined
    ? { REDIS_URL: `redis://${overrides.REDIS_CLUSTER_NODES.split(',')[0]}`, REDIS_CLUSTER_NODES: overrides.REDIS_CLUSTER_NODES }
    : overrides.REDIS_URL !== undefined ? { REDIS_URL: overrides.REDIS_URL, REDIS_CLUSTER_NODES: '' } : {}
  const { MONGODB_URI, REDIS_URL, REDIS_CLUSTER_NODES } = { ...servers, ...own }
  const id = uniqueId()
  const mailDir = await mkdtemp(join(tmpdir(), 'parley-mail-'))
  const app = await buildApp({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    MONGODB_URI,
    REDIS_URL,
    REDIS_CLUSTER_NODES,
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
    await deleteKeys({ url: REDIS_URL, clusterNodes: REDIS_CLUSTER_NODES.split(',').filter(Boolean) }, [`${prefix}:*`, `{${prefix}:*`])
    await rm(mailDir, { recursive: true, force: true })
  })
  return app
}

async function deleteKeys (target: { url: string, clusterNodes: string[] }, patterns: string[]): Promise<void> {
  const redis = openRedis(target, { maxRetriesPerRequest: 1 })
  try {
    await new Promise<void>((resolve, reject) => {
      if (redis.status === 'ready') resolve()
      else { redis.once('ready', () => resolve()); redis.once('error', reject) }
    })
    // Scanned node by node (a cluster's keys are spread over its primaries),
    // deleted key by key (one DEL may not span slots).
    for (const node of primaries(redis)) {
      for (const pattern of patterns) {
        let cursor = '0'
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
          await Promise.all(keys.map((key) => redis.del(key)))
          cursor = next
        } while (cursor !== '0')
      }
    }
  } catch {
    // The Redis of this test may be gone already (fault tests stop their own).
  } finally {
    redis.disconnect()
  }
}

/** Keys of this app's Redis namespace matching `pattern`, without the prefix (as app.redis takes them). */
export async function redisKeys (app: FastifyInstance, pattern: string): Promise<string[]> {
  const prefix = `${app.config.REDIS_PREFIX}:`
  // KEYS patterns are not prefixed by ioredis; the keys it returns are. On a
  // cluster each primary holds its own share.
  const found = await Promise.all(primaries(app.redis).map((node) => node.keys(`${prefix}${pattern}`)))
  return found.flat().map((key) => key.slice(prefix.length))
}
