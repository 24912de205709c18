// Round trips per request, counted, not guessed: the app is booted in this
// process exactly as the server boots it (buildApp), against the same servers,
// and every command it sends is observed — MongoDB through the driver's
// command monitoring, Redis at its command connection. Commands sent in the
// same tick travel together (Promise.all, pipelines) and count as one round
// trip: what a request waits for in sequence. Only what the counted request
// itself sends is counted (its async context), not the timers of the app
// running beside it (presence, last-seen flushes, writes behind), which
// otherwise add up during a slow request.
import { AsyncLocalStorage } from 'node:async_hooks'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { buildApp } from '../app.js'

export interface RoundTrips {
  mongoCommands: number
  mongoRoundTrips: number
  redisCommands: number
  redisRoundTrips: number
}

interface Counter { commands: number, trips: number, inTick: boolean }

const inCountedRequest = new AsyncLocalStorage<true>()

function tally (counter: Counter): void {
  if (inCountedRequest.getStore() !== true) return
  counter.commands++
  if (counter.inTick) return
  counter.inTick = true
  counter.trips++
  process.nextTick(() => { counter.inTick = false })
}

export async function bootCounting (env: { MONGODB_URI: string, REDIS_URL: string }): Promise<{ app: FastifyInstance, measure: (request: () => Promise<{ statusCode: number }>, times?: number) => Promise<RoundTrips> }> {
  const app = await buildApp({ ...env, LOG_LEVEL: 'error', EMAIL_WORKER: false, AUTH_RATE_LIMIT_MAX: 1e9, RATE_LIMIT_MAX: 1e9, SEND_RATE_LIMIT_MAX: 1e9, SEARCH_RATE_LIMIT_MAX: 1e9 })
  const mongo: Counter = { commands: 0, trips: 0, inTick: false }
  const redis: Counter = { commands: 0, trips: 0, inTick: false }
  // The driver emits command events only when asked to, from connections made after.
  ;(app.mongo.client as unknown as { monitorCommands: boolean }).monitorCommands = true
  await app.mongo.client.close()
  await app.mongo.client.connect()
  app.mongo.client.on('commandStarted', () => tally(mongo))
  // The bench runs on a single Redis; every command, pipelined or not, passes here.
  const client = app.redis as Redis
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((...args: Parameters<typeof send>) => { tally(redis); return send(...args) }) as typeof send

  async function measure (request: () => Promise<{ statusCode: number }>, times = 3): Promise<RoundTrips> {
    // app.inject hands back a thenable that starts only when awaited: awaited inside the context.
    const answered = async (): Promise<void> => {
      const { statusCode } = await inCountedRequest.run(true, async () => await request())
      if (statusCode >= 300) throw new Error(`the counted request answered ${statusCode}`)
    }
    await answered() // warm: the read model filled, connections open
    const start = { mc: mongo.commands, mt: mongo.trips, rc: redis.commands, rt: redis.trips }
    for (let i = 0; i < times; i++) await answered()
    const per = (n: number): number => Math.round((n / times) * 100) / 100
    return {
      mongoCommands: per(mongo.commands - start.mc),
      mongoRoundTrips: per(mongo.trips - start.mt),
      redisCommands: per(redis.commands - start.rc),
      redisRoundTrips: per(redis.trips - start.rt)
    }
  }
  return { app, measure }
}
