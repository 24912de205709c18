import type { Db } from 'mongodb'
import type { RedisClient } from './redis-client.js'

type State = 'up' | 'down'

const PROBE_TIMEOUT_MS = 1500

// A probe must answer quickly even while a dependency hangs.
async function probe (check: () => Promise<unknown>): Promise<State> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<State>((resolve) => { timer = setTimeout(() => resolve('down'), PROBE_TIMEOUT_MS) })
  try {
    return await Promise.race([check().then(() => 'up' as const, () => 'down' as const), timeout])
  } finally {
    clearTimeout(timer)
  }
}

export async function checkReadiness (db: Db, redis: RedisClient): Promise<{ mongodb: State, redis: State }> {
  const [mongodb, redisState] = await Promise.all([
    probe(() => db.command({ ping: 1 })),
    // Only when connected: a PING queued while reconnecting would wait, not fail.
    probe(async () => {
      if (redis.status !== 'ready') throw new Error(`redis is ${redis.status}`)
      await redis.ping()
    })
  ])
  return { mongodb, redis: redisState }
}
