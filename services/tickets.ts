// Single-use, short-lived tickets that let a browser on another origin open the
// WebSocket (cookies are SameSite=Strict and a browser cannot set headers on
// the upgrade). The ticket is random, stored in Redis for 30 s, and taken out
// with GETDEL on first use.
import type { RedisClient } from './redis-client.js'
import { randomToken } from './crypto.js'
import { sessionKey } from './sessions.js'

export const TICKET_TTL_S = 30
const key = (ticket: string): string => `wsticket:${ticket}`

export async function issueTicket (redis: RedisClient, user: { id: string, sessionId: string }): Promise<string> {
  const ticket = randomToken(24)
  await redis.set(key(ticket), JSON.stringify({ id: user.id, sessionId: user.sessionId }), 'EX', TICKET_TTL_S)
  return ticket
}

/** The user of a ticket (once), if it is valid and its session still live. */
export async function redeemTicket (redis: RedisClient, ticket: string): Promise<{ id: string, sessionId: string } | null> {
  if (!/^[A-Za-z0-9_-]{32}$/.test(ticket)) return null
  const raw = await redis.getdel(key(ticket))
  if (!raw) return null
  const user = JSON.parse(raw) as { id: string, sessionId: string }
  return await redis.exists(sessionKey(user.sessionId)) === 1 ? user : null
}
