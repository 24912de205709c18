// Sessions live in Redis only. A session is one sign-in on one device; its id
// ("sid") is carried by every access token and by its refresh token, so ending
// the session ends both at once. The refresh token is single-use: each refresh
// replaces it, and presenting an already-used one ends the whole session
// (the token family), since that means two parties hold it.
import type { RedisClient } from './redis-client.js'
import { keyedHash, randomToken, sameHash } from './crypto.js'

export interface SessionMeta {
  userAgent?: string
  ip?: string
}

export interface SessionInfo {
  id: string
  userId: string
  device: string
  ip: string
  createdAt: string
  lastUsedAt: string
}

export interface IssuedSession {
  sessionId: string
  refreshToken: string
}

export type RefreshOutcome =
  | { ok: true, userId: string, sessionId: string, refreshToken: string }
  | { ok: false, reason: 'invalid' | 'reused' | 'expired' }

// A session and its used refresh tokens share a hash slot (the rotation script
// touches both); the user's index of sessions is a key of its own.
export const sessionKey = (sessionId: string): string => `sess:{${sessionId}}`
const userSessionsKey = (userId: string): string => `usess:${userId}`
const usedKey = (sessionId: string): string => `sess:{${sessionId}}:used`

// Swaps the refresh-token hash only if it is still the one presented, so two
// concurrent refreshes with one token cannot both succeed.
const ROTATE = `
local current = redis.call('HGET', KEYS[1], 'rt')
if not current then return 0 end
if current ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'rt', ARGV[2], 'lastUsedAt', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`

export interface SessionServiceOptions {
  redis: RedisClient
  hashSecret: string
  refreshTtlS: number
  maxAgeS: number
  /** Told about every ended session (the WebSocket gateway closes its sockets). */
  onRevoked?: (userId: string, sessionIds: string[]) => void | Promise<void>
}

export type SessionService = ReturnType<typeof createSessionService>

export function createSessionService ({ redis, hashSecret, refreshTtlS, maxAgeS, onRevoked }: SessionServiceOptions) {
  const hashToken = (token: string): string => keyedHash(hashSecret, `refresh:${token}`)

  function parseToken (token: string): { sessionId: string } | undefined {
    const match = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/.exec(token)
    return match ? { sessionId: match[1]! } : undefined
  }

  function ttlMs (expiresAt: number, now: number): number {
    return Math.max(1, Math.min(refreshTtlS * 1000, expiresAt - now))
  }

  async function create (userId: string, meta: SessionMeta = {}): Promise<IssuedSession> {
    const sessionId = randomToken(16)
    const refreshToken = `${sessionId}.${randomToken(32)}`
    const now = Date.now()
    const expiresAt = now + maxAgeS * 1000
    // Indexed first: an index entry whose session never got written is dropped
    // by list(), while a session missing from the index would escape revokeAll.
    await redis.multi().sadd(userSessionsKey(userId), sessionId).pexpire(userSessionsKey(userId), maxAgeS * 1000).exec()
    await redis.multi()
      .hset(sessionKey(sessionId), {
        uid: userId,
        rt: hashToken(refreshToken),
        createdAt: new Date(now).toISOString(),
        lastUsedAt: new Date(now).toISOString(),
        expiresAt: String(expiresAt),
        device: (meta.userAgent ?? 'unknown').slice(0, 200),
        ip: meta.ip ?? ''
      })
      .pexpire(sessionKey(sessionId), ttlMs(expiresAt, now))
      .exec()
    return { sessionId, refreshToken }
  }

  async function refresh (refreshToken: string): Promise<RefreshOutcome> {
    const parsed = parseToken(refreshToken)
    if (!parsed) return { ok: false, reason: 'invalid' }
    const { sessionId } = parsed
    const session = await redis.hgetall(sessionKey(sessionId))
    if (!session.uid) return { ok: false, reason: 'expired' }
    const presented = hashToken(refreshToken)
    if (!sameHash(session.rt, presented)) {
      // Only a token this session really issued and already rotated away counts
      // as theft; a made-up token with a known session id is merely invalid.
      if (await redis.sismember(usedKey(sessionId), presented) === 1) {
        await revoke(session.uid, sessionId)
        return { ok: false, reason: 'reused' }
      }
      return { ok: false, reason: 'invalid' }
    }
    const now = Date.now()
    const expiresAt = Number(session.expiresAt)
    if (!(expiresAt > now)) {
      await revoke(session.uid, sessionId)
      return { ok: false, reason: 'expired' }
    }
    const nextToken = `${sessionId}.${randomToken(32)}`
    const rotated = await redis.eval(ROTATE, 2, sessionKey(sessionId), usedKey(sessionId),
      presented, hashToken(nextToken), new Date(now).toISOString(), ttlMs(expiresAt, now)) as number
    if (rotated !== 1) {
      // Another request rotated this very token a moment ago: it was used twice.
      await revoke(session.uid, sessionId)
      return { ok: false, reason: 'reused' }
    }
    return { ok: true, userId: session.uid, sessionId, refreshToken: nextToken }
  }

  async function revoke (userId: string, ...sessionIds: string[]): Promise<void> {
    if (sessionIds.length === 0) return
    // One batch: each session in its own slot, then the index.
    await Promise.all([
      ...sessionIds.map((sessionId) => redis.del(sessionKey(sessionId), usedKey(sessionId))),
      redis.srem(userSessionsKey(userId), ...sessionIds)
    ])
    await onRevoked?.(userId, sessionIds)
  }

  /** Ends every session of the user, or every one but `exceptSessionId`. */
  async function revokeAll (userId: string, exceptSessionId?: string): Promise<number> {
    const sessionIds = (await redis.smembers(userSessionsKey(userId))).filter((id) => id !== exceptSessionId)
    await revoke(userId, ...sessionIds)
    return sessionIds.length
  }

  async function list (userId: string): Promise<SessionInfo[]> {
    const sessionIds = await redis.smembers(userSessionsKey(userId))
    if (sessionIds.length === 0) return []
    const results = await Promise.all(sessionIds.map((sessionId) => redis.hgetall(sessionKey(sessionId))))
    const live: SessionInfo[] = []
    const gone: string[] = []
    sessionIds.forEach((sessionId, i) => {
      const session = results[i]
      if (!session?.uid) return gone.push(sessionId)
      live.push({ id: sessionId, userId: session.uid, device: session.device ?? 'unknown', ip: session.ip ?? '', createdAt: session.createdAt!, lastUsedAt: session.lastUsedAt! })
    })
    // Sessions that simply expired leave their id behind in the set.
    if (gone.length > 0) await redis.srem(userSessionsKey(userId), ...gone)
    return live.sort((a, b) => b.lastUsedAt.localeCompare(a.lastUsedAt))
  }

  async function owner (sessionId: string): Promise<string | null> {
    return redis.hget(sessionKey(sessionId), 'uid')
  }

  return { create, refresh, revoke, revokeAll, list, owner }
}
