import fp from 'fastify-plugin'
import cookie from '@fastify/cookie'
import jwt from '@fastify/jwt'
import createError from '@fastify/error'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sessionKey } from '../services/sessions.js'
import { createApiKeyVerifier, looksLikeApiKey } from '../services/bots.js'

export interface AccessClaims {
  sub: string
  sid: string
  typ: 'access'
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessClaims
    user: { id: string, sessionId: string, tokenType: string }
  }
}

export interface CookieNames {
  access: string
  refresh: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler: a valid access token of a live session (Bearer header or cookie), or a bot's API key (Bearer). */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    /** preHandler after authenticate: refuses bots (routes about a person's account, sessions and devices). */
    humansOnly: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    /** preHandler: refuses a cookie-carrying unsafe request from another site. */
    sameOriginGuard: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    /** True when the request has no Origin (not a browser) or comes from this host or an allowlisted origin. */
    originAllowed: (request: FastifyRequest) => boolean
    cookieNames: CookieNames
  }
  interface FastifyContextConfig {
    /**
     * A GET route whose handler only reads: its reads run alongside the
     * session and budget check instead of after it, and the reply (data or
     * error) waits for the check, which replaces it when it fails. Saves a
     * Redis round trip on the hot reads.
     */
    readOnly?: boolean
  }
  interface FastifyRequest {
    /** The session and budget check still running for a readOnly route. */
    pendingSessionCheck?: Promise<void>
  }
}

export const Unauthorized = createError('UNAUTHORIZED', 'Authentication required', 401)
export const InvalidToken = createError('INVALID_TOKEN', 'The access token is invalid or expired', 401)
export const SessionRevoked = createError('SESSION_REVOKED', 'This session has ended; sign in again', 401)
export const CrossSiteRejected = createError('CSRF_REJECTED', 'Cross-site request refused', 403)
export const InvalidApiKey = createError('INVALID_API_KEY', 'The API key is invalid or revoked', 401)
export const NotForBots = createError('NOT_FOR_BOTS', 'Bots cannot use this route', 403)

/** request.user.tokenType of a request made with a bot's API key. */
export const BOT_TOKEN_TYPE = 'bot'

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
/** Verified access tokens remembered per instance (fast-jwt's LRU, a few hundred bytes each). */
const VERIFIED_TOKENS_CACHED = 10_000

export default fp(async (fastify) => {
  const { JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, ACCESS_TOKEN_TTL_S, COOKIE_SECURE, corsOrigins } = fastify.config
  // `__Host-` needs Secure and Path=/; the refresh cookie is path-limited, so it
  // can only be `__Secure-`.
  const cookieNames: CookieNames = COOKIE_SECURE
    ? { access: '__Host-access_token', refresh: '__Secure-refresh_token' }
    : { access: 'access_token', refresh: 'refresh_token' }

  await fastify.register(cookie)
  await fastify.register(jwt, {
    secret: JWT_SECRET,
    sign: { algorithm: 'HS256', iss: JWT_ISSUER, aud: JWT_AUDIENCE, expiresIn: ACCESS_TOKEN_TTL_S },
    // Verified tokens are remembered (until they expire): a client sends the
    // same one with every request. Revocation is the session check's job.
    verify: { algorithms: ['HS256'], allowedIss: JWT_ISSUER, allowedAud: JWT_AUDIENCE, cache: VERIFIED_TOKENS_CACHED },
    cookie: { cookieName: cookieNames.access, signed: false }
  })

  const trustedOrigins = new Set(corsOrigins)
  const originAllowed = (request: FastifyRequest): boolean => {
    const origin = request.headers.origin
    if (origin === undefined) return true
    const host = request.headers.host
    if (host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)) return true
    return trustedOrigins.has(origin)
  }
  const sameOriginGuard = async (request: FastifyRequest): Promise<void> => {
    if (SAFE_METHODS.has(request.method)) return
    // Bearer clients are not exposed to CSRF: a browser never adds that header by itself.
    if (request.headers.authorization !== undefined) return
    const hasAuthCookie = request.cookies[cookieNames.access] !== undefined || request.cookies[cookieNames.refresh] !== undefined
    if (!hasAuthCookie) return
    if (request.headers['sec-fetch-site'] === 'cross-site') throw new CrossSiteRejected()
    if (!originAllowed(request)) throw new CrossSiteRejected()
  }

  const verifyApiKey = createApiKeyVerifier(fastify.mongo.db, fastify.redis)
  const authenticateBot = async (request: FastifyRequest, apiKey: string): Promise<void> => {
    const bot = await verifyApiKey(apiKey)
    if (!bot) throw new InvalidApiKey()
    await fastify.requestLimits.consume(request.routeOptions.config.rateBucket ?? 'api', bot.botId)
    request.user = { id: bot.botId, sessionId: `apikey:${bot.keyId}`, tokenType: BOT_TOKEN_TYPE }
  }

  /** Revocation is immediate: the session must still exist in Redis. The request is charged to the user's budget in the same round trip. */
  const checkSession = async (request: FastifyRequest, userId: string, sessionId: string): Promise<void> => {
    const charged = fastify.requestLimits.consume(request.routeOptions.config.rateBucket ?? 'api', userId).then(() => undefined, (err: unknown) => err)
    const live = await fastify.redis.exists(sessionKey(sessionId))
    const refused = await charged
    if (live === 0) throw new SessionRevoked()
    if (refused !== undefined) throw refused
  }

  const authenticate = async (request: FastifyRequest): Promise<void> => {
    const authorization = request.headers.authorization
    if (authorization?.startsWith('Bearer ') === true && looksLikeApiKey(authorization.slice(7))) return authenticateBot(request, authorization.slice(7))
    if (authorization === undefined && request.cookies[cookieNames.access] === undefined) throw new Unauthorized()
    if (authorization !== undefined && !/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/.test(authorization)) throw new InvalidToken()
    // fastify.jwt.verify, not request.jwtVerify: the latter decodes the token
    // twice and runs a callback waterfall (together 5% of `GET /api/auth/me`).
    const token = authorization !== undefined ? authorization.slice(7) : request.cookies[cookieNames.access]!
    let claims: Partial<AccessClaims>
    try {
      claims = fastify.jwt.verify<Partial<AccessClaims>>(token)
    } catch {
      throw new InvalidToken()
    }
    const { sub: id, sid: sessionId, typ: tokenType } = claims
    if (tokenType !== 'access' || typeof sessionId !== 'string' || typeof id !== 'string') throw new InvalidToken()
    request.user = { id, sessionId, tokenType }
    // GET only (see the onRoute check below), so there is no cross-site write to guard against.
    if (request.routeOptions.config.readOnly === true) {
      const check = checkSession(request, id, sessionId)
      check.catch(() => {}) // awaited in onSend
      request.pendingSessionCheck = check
      return
    }
    await checkSession(request, id, sessionId)
    await sameOriginGuard(request)
  }

  // A readOnly route answers only once its session check has passed; a
  // failed check becomes the answer (through the error handler, which comes
  // back here with nothing pending).
  fastify.addHook('onSend', (request, _reply, payload, done) => {
    const pending = request.pendingSessionCheck
    if (pending === undefined) return done(null, payload)
    request.pendingSessionCheck = undefined
    pending.then(() => done(null, payload), (err: Error) => done(err))
  })
  fastify.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    if (route.config?.readOnly === true && (methods.some((m) => m !== 'GET' && m !== 'HEAD') || route.wsHandler !== undefined)) {
      throw new Error(`${route.url}: readOnly is for GET routes that only read`)
    }
  })

  fastify.decorate('cookieNames', cookieNames)
  fastify.decorate('sameOriginGuard', sameOriginGuard)
  fastify.decorate('originAllowed', originAllowed)
  fastify.decorate('authenticate', authenticate)
  fastify.decorate('humansOnly', async (request: FastifyRequest) => {
    if (request.user.tokenType === BOT_TOKEN_TYPE) throw new NotForBots()
  })
}, { name: 'auth', dependencies: ['config', 'db', 'redis', 'errors', 'rate-limit', 'keys'] })
