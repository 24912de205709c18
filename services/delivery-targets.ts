// Who a stored message change must reach besides the members' sockets: the
// conversation's enabled webhooks, and the members who have push devices.
// Kept in Redis so that a send tells in one round trip whether there is
// anything to queue at all (most conversations have no webhook, most members
// no device), and the events worker asks the database nothing per message.
// Rebuilt from MongoDB on a miss.
//
// Coherence: every write of a webhook or a push subscription, once stored,
// bumps the owner's generation and drops its copy. A fill keeps its value
// only if the generation it read before querying MongoDB is still the same,
// so a fill that raced a write never leaves the older answer behind.
import type { Collection, Db } from 'mongodb'
import { getMany, type RedisClient } from './redis-client.js'

const TTL_S = 24 * 3600

const scripts = {
  targetsFill: {
    numberOfKeys: 2,
    lua: `if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1`
  },
  targetsDrop: {
    numberOfKeys: 2,
    lua: `redis.call('INCR', KEYS[2]) redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 0`
  }
} as const

type Scripted = { [K in keyof typeof scripts]: (...args: Array<string | number>) => Promise<unknown> }

// Value and generation share a hash tag: the scripts touch both (one slot on a cluster).
const keys = {
  webhooks: (conversationId: string) => [`dt:hooks:{${conversationId}}`, `dt:hooksgen:{${conversationId}}`] as const,
  devices: (userId: string) => [`dt:devices:{${userId}}`, `dt:devicesgen:{${userId}}`] as const
}

export interface WebhookTarget { id: string, events: string[] }

export type DeliveryTargets = ReturnType<typeof createDeliveryTargets>

export function createDeliveryTargets (deps: { db: Db, redis: RedisClient }) {
  const { redis } = deps
  for (const [name, script] of Object.entries(scripts)) {
    if (!(name in redis)) redis.defineCommand(name, script)
  }
  const r = redis as RedisClient & Scripted
  const webhooks: Collection<{ conversationId: string, enabled: boolean, events: string[] }> = deps.db.collection('webhooks')
  const subscriptions: Collection<{ userId: string }> = deps.db.collection('push_subscriptions')

  /** Values and generations of `pairs`, in one round trip. */
  async function read (pairs: ReadonlyArray<readonly [string, string]>): Promise<Array<{ value: string | null, generation: string }>> {
    const raw = await getMany(r, pairs.flat())
    return pairs.map((_, i) => ({ value: raw[2 * i] ?? null, generation: raw[2 * i + 1] ?? '0' }))
  }

  async function fill ([valueKey, generationKey]: readonly [string, string], generation: string, value: string): Promise<void> {
    await r.targetsFill(valueKey, generationKey, generation, value, TTL_S)
  }

  /** The conversation's enabled webhooks and the events each takes. */
  async function webhooksOf (conversationId: string): Promise<WebhookTarget[]> {
    const pair = keys.webhooks(conversationId)
    const [cached] = await read([pair])
    if (cached!.value !== null) return JSON.parse(cached!.value) as WebhookTarget[]
    const found = (await webhooks.find({ conversationId, enabled: true }, { projection: { events: 1 } }).toArray())
      .map((w) => ({ id: w._id.toHexString(), events: w.events }))
    await fill(pair, cached!.generation, JSON.stringify(found))
    return found
  }

  /** Those of `userIds` who have at least one push device. */
  async function withDevices (userIds: string[]): Promise<Set<string>> {
    const out = new Set<string>()
    if (userIds.length === 0) return out
    const pairs = userIds.map(keys.devices)
    const cached = await read(pairs)
    const missing: Array<{ userId: string, index: number }> = []
    userIds.forEach((userId, index) => {
      const value = cached[index]!.value
      if (value === null) missing.push({ userId, index })
      else if (Number(value) > 0) out.add(userId)
    })
    if (missing.length > 0) {
      const counts = new Map<string, number>()
      for (const s of await subscriptions.find({ userId: { $in: missing.map((m) => m.userId) } }, { projection: { userId: 1 } }).toArray()) {
        counts.set(s.userId, (counts.get(s.userId) ?? 0) + 1)
      }
      await Promise.all(missing.map(({ userId, index }) => fill(pairs[index]!, cached[index]!.generation, String(counts.get(userId) ?? 0))))
      for (const { userId } of missing) if ((counts.get(userId) ?? 0) > 0) out.add(userId)
    }
    return out
  }

  /** Whether a change of this type in this conversation has anything to deliver besides sockets. */
  async function anyFor (conversationId: string, type: string, recipients: string[]): Promise<boolean> {
    const [hooks, devices] = await Promise.all([
      webhooksOf(conversationId),
      type === 'message.created' ? withDevices(recipients) : new Set<string>()
    ])
    return devices.size > 0 || hooks.some((w) => w.events.includes(type))
  }

  /** After a webhook of the conversation was stored, changed or removed. */
  async function webhooksChanged (conversationId: string): Promise<void> {
    await r.targetsDrop(...keys.webhooks(conversationId), TTL_S)
  }

  /** After push subscriptions of these users were stored or removed. */
  async function devicesChanged (userIds: string[]): Promise<void> {
    await Promise.all([...new Set(userIds)].map((userId) => r.targetsDrop(...keys.devices(userId), TTL_S)))
  }

  return { webhooksOf, withDevices, anyFor, webhooksChanged, devicesChanged }
}
