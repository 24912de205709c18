import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import {
  Accepted, ChangePasswordBody, Done, EmailBody, LoginBody, RefreshBody, RegisterBody, ResetBody, SelfUser,
  SessionParams, SessionsResponse, SignedInResponse, TokenResponse, VerifyBody
} from '../../../schemas/auth.js'
import { errorResponses, bearerOrCookie } from '../../../schemas/common.js'
import type { SignedIn } from '../../../services/accounts.js'
import { SessionNotFound } from '../../../services/errors.js'
import { toSelfUser } from '../../../services/users.js'
import { Unauthorized } from '../../../plugins/auth.js'

const tags = ['auth']
const ACCEPTED_MESSAGE = 'If the address can receive it, a mail is on its way.'

const auth: FastifyPluginAsyncTypebox = async (fastify) => {
  const { ACCESS_TOKEN_TTL_S, REFRESH_TOKEN_TTL_S, COOKIE_SECURE, AUTH_RATE_LIMIT_MAX } = fastify.config
  const names = fastify.cookieNames
  // Per client IP, per route, counted in Redis so it holds across instances.
  const config = { rateLimit: { max: AUTH_RATE_LIMIT_MAX, timeWindow: 60_000 } }

  // Cookie-carrying requests from other sites are refused on every auth route,
  // including those (refresh) that take no access token.
  fastify.addHook('onRequest', fastify.sameOriginGuard)

  const accessCookie = { httpOnly: true, secure: COOKIE_SECURE, sameSite: 'strict', path: '/' } as const
  const refreshCookie = { httpOnly: true, secure: COOKIE_SECURE, sameSite: 'strict', path: '/api/auth' } as const

  function setSessionCookies (reply: FastifyReply, tokens: { accessToken: string, refreshToken: string }): void {
    reply.setCookie(names.access, tokens.accessToken, { ...accessCookie, maxAge: ACCESS_TOKEN_TTL_S })
    reply.setCookie(names.refresh, tokens.refreshToken, { ...refreshCookie, maxAge: REFRESH_TOKEN_TTL_S })
  }
  function clearSessionCookies (reply: FastifyReply): void {
    reply.clearCookie(names.access, accessCookie)
    reply.clearCookie(names.refresh, refreshCookie)
  }
  const sessionMeta = (request: FastifyRequest) => ({ userAgent: request.headers['user-agent'], ip: request.ip })
  function signedInBody (signedIn: SignedIn, includeRefreshToken: boolean | undefined) {
    return {
      user: toSelfUser(signedIn.user),
      accessToken: signedIn.accessToken,
      tokenType: 'Bearer' as const,
      expiresIn: ACCESS_TOKEN_TTL_S,
      ...(includeRefreshToken === true ? { refreshToken: signedIn.refreshToken } : {})
    }
  }

  fastify.post('/register', {
    config,
    schema: {
      tags,
      summary: 'Start a registration: mails a 6-digit code',
      description: 'Always 202 for a well-formed request, whether or not the email has an account (an existing account gets a "you already have an account" mail instead). The pending registration lives 5 minutes. Errors: USERNAME_TAKEN, WEAK_PASSWORD, CODE_COOLDOWN (429, retry-after).',
      body: RegisterBody,
      response: { 202: Accepted, ...errorResponses(400, 409, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    await fastify.accounts.register(request.body)
    return reply.code(202).send({ status: 'accepted', message: ACCEPTED_MESSAGE })
  })

  fastify.post('/register/resend', {
    config,
    schema: {
      tags,
      summary: 'Mail a new registration code (replaces the old one)',
      description: 'One per minute per address (CODE_COOLDOWN, 429 with retry-after). Always 202.',
      body: EmailBody,
      response: { 202: Accepted, ...errorResponses(400, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    await fastify.accounts.resendRegistration(request.body.email)
    return reply.code(202).send({ status: 'accepted', message: ACCEPTED_MESSAGE })
  })

  fastify.post('/register/verify', {
    config,
    schema: {
      tags,
      summary: 'Finish a registration with the mailed code: creates the user and signs in',
      description: 'Sets the access and refresh cookies. Errors: INVALID_CODE, CODE_EXPIRED, CODE_EXHAUSTED (after 5 wrong codes), TOO_MANY_GUESSES (429), USERNAME_TAKEN, ACCOUNT_EXISTS.',
      body: VerifyBody,
      response: { 201: SignedInResponse, ...errorResponses(400, 409, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const signedIn = await fastify.accounts.verifyRegistration(request.body, sessionMeta(request))
    setSessionCookies(reply, signedIn)
    return reply.code(201).send(signedInBody(signedIn, request.body.includeRefreshToken))
  })

  fastify.post('/login', {
    config,
    schema: {
      tags,
      summary: 'Sign in with email or username and password',
      description: 'Sets the access and refresh cookies and returns the access token for Bearer clients. A wrong login and a wrong password give the same INVALID_CREDENTIALS. Too many failures for one account: ACCOUNT_LOCKED (429, retry-after).',
      body: LoginBody,
      response: { 200: SignedInResponse, ...errorResponses(400, 401, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const signedIn = await fastify.accounts.login(request.body, sessionMeta(request))
    setSessionCookies(reply, signedIn)
    return signedInBody(signedIn, request.body.includeRefreshToken)
  })

  fastify.post('/refresh', {
    config,
    // Browsers send only the cookie, with no body at all.
    preValidation: async (request) => { request.body ??= {} },
    schema: {
      tags,
      summary: 'Trade the refresh token for a new access token and a new refresh token',
      description: 'The refresh token comes from its cookie, or from the body for clients without cookies (then the new one is returned in the body). Each refresh token works once: presenting a used one ends the whole session (REFRESH_TOKEN_REUSED). Otherwise INVALID_REFRESH_TOKEN.',
      body: RefreshBody,
      response: { 200: TokenResponse, ...errorResponses(400, 401, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const fromBody = request.body.refreshToken
    try {
      const tokens = await fastify.accounts.refresh(fromBody ?? request.cookies[names.refresh])
      setSessionCookies(reply, tokens)
      return { accessToken: tokens.accessToken, tokenType: 'Bearer' as const, expiresIn: ACCESS_TOKEN_TTL_S, ...(fromBody ? { refreshToken: tokens.refreshToken } : {}) }
    } catch (err) {
      clearSessionCookies(reply)
      throw err
    }
  })

  fastify.post('/logout', {
    config,
    preHandler: [fastify.authenticate, fastify.humansOnly],
    schema: {
      tags,
      summary: 'Sign out: ends this session at once and clears the cookies',
      security: bearerOrCookie,
      response: { 200: Done, ...errorResponses(401, 403, 429, 500) }
    }
  }, async (request, reply) => {
    await fastify.sessions.revoke(request.user.id, request.user.sessionId)
    clearSessionCookies(reply)
    return { status: 'ok' as const }
  })

  fastify.post('/logout-all', {
    config,
    preHandler: [fastify.authenticate, fastify.humansOnly],
    schema: {
      tags,
      summary: 'Sign out everywhere: ends every session of the user',
      security: bearerOrCookie,
      response: { 200: Done, ...errorResponses(401, 403, 429, 500) }
    }
  }, async (request, reply) => {
    await fastify.sessions.revokeAll(request.user.id)
    clearSessionCookies(reply)
    return { status: 'ok' as const }
  })

  fastify.get('/sessions', {
    config,
    preHandler: [fastify.authenticate, fastify.humansOnly],
    schema: {
      tags,
      summary: "List the user's sessions (devices)",
      security: bearerOrCookie,
      response: { 200: SessionsResponse, ...errorResponses(401, 429, 500) }
    }
  }, async (request) => {
    const sessions = await fastify.sessions.list(request.user.id)
    return { sessions: sessions.map(({ userId: _userId, ...s }) => ({ ...s, current: s.id === request.user.sessionId })) }
  })

  fastify.delete('/sessions/:id', {
    config,
    preHandler: [fastify.authenticate, fastify.humansOnly],
    schema: {
      tags,
      summary: 'End one of your sessions',
      description: 'SESSION_NOT_FOUND for ids that are not your live sessions.',
      security: bearerOrCookie,
      params: SessionParams,
      response: { 200: Done, ...errorResponses(400, 401, 403, 404, 429, 500) }
    }
  }, async (request, reply) => {
    if (await fastify.sessions.owner(request.params.id) !== request.user.id) throw new SessionNotFound()
    await fastify.sessions.revoke(request.user.id, request.params.id)
    if (request.params.id === request.user.sessionId) clearSessionCookies(reply)
    return { status: 'ok' as const }
  })

  // Signed in: the user's budget applies, not the per-IP one of the sign-in routes.
  fastify.get('/me', {
    config: { readOnly: true },
    preHandler: fastify.authenticate,
    schema: {
      tags,
      summary: 'The signed-in user',
      security: bearerOrCookie,
      response: { 200: SelfUser, ...errorResponses(401, 429, 500) }
    }
  }, async (request) => {
    const user = await fastify.readModel.self(request.user.id)
    if (!user) throw new Unauthorized()
    return user
  })

  fastify.post('/password/forgot', {
    config,
    schema: {
      tags,
      summary: 'Mail a password-reset code',
      description: 'Always 202, whether or not the email has an account; a code is mailed only when it has. One per minute per address (CODE_COOLDOWN).',
      body: EmailBody,
      response: { 202: Accepted, ...errorResponses(400, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    await fastify.accounts.forgotPassword(request.body.email)
    return reply.code(202).send({ status: 'accepted', message: ACCEPTED_MESSAGE })
  })

  fastify.post('/password/reset', {
    config,
    schema: {
      tags,
      summary: 'Set a new password with the mailed code; ends every session',
      description: 'Does not sign in. Errors: INVALID_CODE, CODE_EXPIRED, CODE_EXHAUSTED, TOO_MANY_GUESSES, WEAK_PASSWORD.',
      body: ResetBody,
      response: { 200: Done, ...errorResponses(400, 413, 415, 429, 500) }
    }
  }, async (request) => {
    await fastify.accounts.resetPassword(request.body)
    return { status: 'ok' as const }
  })

  fastify.post('/password/change', {
    config,
    preHandler: [fastify.authenticate, fastify.humansOnly],
    schema: {
      tags,
      summary: 'Change the password; ends every other session',
      description: 'Errors: WRONG_PASSWORD (403), WEAK_PASSWORD, ACCOUNT_LOCKED (429).',
      security: bearerOrCookie,
      body: ChangePasswordBody,
      response: { 200: Done, ...errorResponses(400, 401, 403, 413, 415, 429, 500) }
    }
  }, async (request) => {
    await fastify.accounts.changePassword(request.user.id, request.user.sessionId, request.body)
    return { status: 'ok' as const }
  })
}

export default auth
