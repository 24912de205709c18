import fp from 'fastify-plugin'
import { createAccountService, type AccountService } from '../services/accounts.js'
import { createCodeService } from '../services/one-time-codes.js'
import { createSessionService, type SessionService } from '../services/sessions.js'
import { createUserService, type UserService } from '../services/users.js'
import type { AccessClaims } from './auth.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UserService
    sessions: SessionService
    accounts: AccountService
    /** Listeners told when sessions end (the WebSocket gateway closes their sockets). */
    onSessionsRevoked: (listener: (userId: string, sessionIds: string[]) => void | Promise<void>) => void
  }
}

export default fp(async (fastify) => {
  const { HASH_SECRET, REFRESH_TOKEN_TTL_S, SESSION_MAX_AGE_S, LOGIN_FAILURE_LIMIT, CODE_GUESS_LIMIT } = fastify.config
  const revokedListeners: Array<(userId: string, sessionIds: string[]) => void | Promise<void>> = []

  const users = createUserService(fastify.mongo.db)
  const sessions = createSessionService({
    redis: fastify.redis,
    hashSecret: HASH_SECRET,
    refreshTtlS: REFRESH_TOKEN_TTL_S,
    maxAgeS: SESSION_MAX_AGE_S,
    onRevoked: async (userId, sessionIds) => {
      for (const listener of revokedListeners) {
        try {
          await listener(userId, sessionIds)
        } catch (err) {
          fastify.log.error({ err }, 'session-revoked listener failed')
        }
      }
    }
  })
  const accounts = createAccountService({
    redis: fastify.redis,
    hashSecret: HASH_SECRET,
    users,
    codes: createCodeService(fastify.redis, HASH_SECRET),
    sessions,
    enqueueMail: fastify.mailer.enqueue,
    signAccessToken: (userId, sessionId) => fastify.jwt.sign({ sub: userId, sid: sessionId, typ: 'access' } satisfies AccessClaims),
    loginFailureLimit: LOGIN_FAILURE_LIMIT,
    codeGuessLimit: CODE_GUESS_LIMIT
  })

  fastify.decorate('users', users)
  fastify.decorate('sessions', sessions)
  fastify.decorate('accounts', accounts)
  fastify.decorate('onSessionsRevoked', (listener: (userId: string, sessionIds: string[]) => void | Promise<void>) => { revokedListeners.push(listener) })
}, { name: 'accounts', dependencies: ['config', 'db', 'redis', 'mailer', 'auth', 'keys'] })
