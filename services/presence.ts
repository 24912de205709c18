// Presence across instances, in Redis. Every open socket is an entry
// `${userId}|${connectionId}` in one sorted set, scored by when it expires; the
// instance holding the socket pushes that forward on every heartbeat. A user is
// online while any entry of theirs is unexpired. When an instance dies without
// cleaning up, its entries simply expire, and whichever instance sweeps first
// (ZREM succeeds for exactly one) announces the user offline.
//
// The user's own set and the shared index are separate keys (on a cluster they
// live on different shards), written together but not atomically: the user's
// set is what answers "online?", the index only finds what must be swept, and
// a sweep of an entry whose user set is already gone costs nothing.
import type { RedisClient } from './redis-client.js'
import type { ObjectId } from 'mongodb'
import { parseObjectId, type UserDoc, type UserService } from './users.js'
import type { Publish } from './events.js'

const ENTRIES = 'presence:entries'
/** Last seen through HTTP is recorded to within this. */
export const TOUCH_EVERY_S = 60
const userKey = (userId: string): string => `presence:user:${userId}`

/** Whether the user has an open socket on any instance (for whoever only has Redis: the push worker). */
export async function hasOpenSocket (redis: RedisClient, userId: string): Promise<boolean> {
  return await redis.zcount(userKey(userId), Date.now(), '+inf') > 0
}

export interface PresenceState { userId: string, online: boolean, lastSeenAt: string | null }

export type PresenceService = ReturnType<typeof createPresenceService>

export function createPresenceService (deps: {
  redis: RedisClient
  users: UserService
  publish: Publish
  /** Everyone who shares a conversation with the user: they get the user's presence. */
  contacts: (userId: string) => Promise<string[]>
  /** Public profiles by id, with their last seen (the read model). */
  profilesOf: (userIds: string[]) => Promise<Map<string, { lastSeenAt: string | null }>>
  /** A profile (its last seen) changed: the read model keeps the newest. */
  onProfileChanged: (user: UserDoc) => Promise<void>
  ttlS: number
  graceMs: number
}) {
  const { redis, users, publish, contacts, profilesOf, onProfileChanged, ttlS, graceMs } = deps
  const ttlMs = ttlS * 1000

  // Users this instance recorded as seen, and when: a cache that only saves Redis calls.
  const touchedHere = new Map<string, number>()

  async function liveCount (userId: string, now = Date.now()): Promise<number> {
    return redis.zcount(userKey(userId), now, '+inf')
  }

  async function announce (userId: string, online: boolean): Promise<void> {
    let lastSeenAt: string | null = null
    if (!online) {
      const at = new Date()
      const _id = parseObjectId(userId)
      if (_id) await recordLastSeen(_id, at)
      lastSeenAt = at.toISOString()
    }
    await publish(await contacts(userId), { type: 'presence', data: { userId, online, lastSeenAt } })
  }

  /**
   * The user did something over HTTP: their last seen moves to now, at most
   * once a minute (one Redis SET NX per request, one database write a minute).
   */
  async function touch (userId: string): Promise<void> {
    const _id = parseObjectId(userId)
    // Most requests end here: this instance recorded the user within the minute.
    const now = Date.now()
    if (!_id || (touchedHere.get(userId) ?? 0) > now - TOUCH_EVERY_S * 1000) return
    if (touchedHere.size > 100_000) touchedHere.clear()
    touchedHere.set(userId, now)
    if (await redis.set(`presence:touched:${userId}`, '1', 'EX', TOUCH_EVERY_S, 'NX') === null) return
    await recordLastSeen(_id, new Date())
  }

  async function recordLastSeen (_id: ObjectId, at: Date): Promise<void> {
    const user = await users.collection.findOneAndUpdate({ _id }, { $set: { lastSeenAt: at } }, { returnDocument: 'after' })
    if (user) await onProfileChanged(user)
  }

  async function connected (userId: string, connectionId: string): Promise<void> {
    const now = Date.now()
    const wasOnline = await liveCount(userId, now) > 0
    const expiry = now + ttlMs
    await Promise.all([
      redis.multi().zadd(userKey(userId), expiry, connectionId).pexpire(userKey(userId), ttlMs * 2).exec(),
      redis.zadd(ENTRIES, expiry, `${userId}|${connectionId}`)
    ])
    if (!wasOnline) await announce(userId, true)
  }

  /** Pushes the expiry of these connections forward (each instance, on its heartbeat). */
  async function heartbeat (entries: Array<{ userId: string, connectionId: string }>): Promise<void> {
    if (entries.length === 0) return
    const expiry = Date.now() + ttlMs
    await Promise.all(entries.flatMap(({ userId, connectionId }) => [
      redis.zadd(userKey(userId), 'XX', expiry, connectionId),
      redis.pexpire(userKey(userId), ttlMs * 2),
      redis.zadd(ENTRIES, 'XX', expiry, `${userId}|${connectionId}`)
    ]))
  }

  async function wentAway (userId: string): Promise<void> {
    if (await liveCount(userId) === 0) await announce(userId, false)
  }

  async function disconnected (userId: string, connectionId: string): Promise<void> {
    await Promise.all([redis.zrem(userKey(userId), connectionId), redis.zrem(ENTRIES, `${userId}|${connectionId}`)])
    // A reconnect within the grace period (page reload, network switch) is not an absence.
    if (graceMs === 0) return wentAway(userId)
    setTimeout(() => { wentAway(userId).catch(() => {}) }, graceMs).unref()
  }

  /** Removes expired entries (sockets of dead instances) and announces who went offline. */
  async function sweep (): Promise<number> {
    const now = Date.now()
    const expired = await redis.zrangebyscore(ENTRIES, '-inf', now, 'LIMIT', 0, 500)
    let handled = 0
    for (const entry of expired) {
      if (await redis.zrem(ENTRIES, entry) !== 1) continue // another instance took it
      const [userId, connectionId] = entry.split('|') as [string, string]
      await redis.zrem(userKey(userId), connectionId)
      handled++
      await wentAway(userId)
    }
    return handled
  }

  async function states (userIds: string[]): Promise<PresenceState[]> {
    const now = Date.now()
    const [counts, profiles] = await Promise.all([
      Promise.all(userIds.map((id) => redis.zcount(userKey(id), now, '+inf'))),
      profilesOf(userIds)
    ])
    return userIds.map((userId, i) => ({
      userId,
      online: (counts[i] ?? 0) > 0,
      lastSeenAt: profiles.get(userId)?.lastSeenAt ?? null
    }))
  }

  return { connected, heartbeat, disconnected, sweep, states, liveCount, touch }
}
