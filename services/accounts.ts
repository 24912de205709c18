// The account flows of PRODUCT.md, over users (MongoDB), codes and sessions
// (Redis) and the mail queue. Route handlers only translate HTTP to these calls.
import type { RedisClient } from './redis-client.js'
import { RateLimiterRedis } from 'rate-limiter-flexible'
import { emailKey, randomToken } from './crypto.js'
import type { CodeService } from './one-time-codes.js'
import type { SessionMeta, SessionService } from './sessions.js'
import { DuplicateUserError, type UserDoc, type UserService } from './users.js'
import { burnVerification, hashPassword, isCommonPassword, needsRehash, verifyPassword } from './passwords.js'
import { alreadyRegisteredMail, passwordResetCodeMail, registrationCodeMail } from './email-templates.js'
import type { EmailJob } from './mail.js'
import {
  AccountExists, AccountLocked, CodeCooldown, CodeExhausted, CodeExpired, InvalidCode, InvalidCredentials,
  InvalidRefreshToken, RefreshTokenReused, TooManyGuesses, UsernameTaken, WeakPassword, WrongPassword, withRetryAfter
} from './errors.js'

export interface SignedIn {
  user: UserDoc
  sessionId: string
  accessToken: string
  refreshToken: string
}

export interface AccountServiceOptions {
  redis: RedisClient
  hashSecret: string
  users: UserService
  codes: CodeService
  sessions: SessionService
  enqueueMail: (jobId: string, mail: EmailJob) => Promise<void>
  signAccessToken: (userId: string, sessionId: string) => Promise<string> | string
  loginFailureLimit?: number
  codeGuessLimit?: number
}

const LOCK_WINDOW_S = 15 * 60
const USERNAME_HOLD_S = 300

export type AccountService = ReturnType<typeof createAccountService>

export function createAccountService (opts: AccountServiceOptions) {
  const { redis, hashSecret, users, codes, sessions, enqueueMail, signAccessToken } = opts
  const loginFailures = new RateLimiterRedis({ storeClient: redis, keyPrefix: 'lockout:login', points: opts.loginFailureLimit ?? 10, duration: LOCK_WINDOW_S })
  const codeGuesses = new RateLimiterRedis({ storeClient: redis, keyPrefix: 'lockout:code', points: opts.codeGuessLimit ?? 20, duration: LOCK_WINDOW_S })
  const usernameHoldKey = (usernameLower: string): string => `uhold:${usernameLower}`

  function assertAcceptablePassword (password: string): void {
    if (isCommonPassword(password)) throw new WeakPassword()
  }

  async function signIn (user: UserDoc, meta: SessionMeta): Promise<SignedIn> {
    const userId = user._id.toHexString()
    const { sessionId, refreshToken } = await sessions.create(userId, meta)
    return { user, sessionId, refreshToken, accessToken: await signAccessToken(userId, sessionId) }
  }

  async function limitCodeGuesses (email: string): Promise<void> {
    const state = await codeGuesses.get(emailKey(hashSecret, email))
    if (state && state.consumedPoints >= codeGuesses.points) throw withRetryAfter(new TooManyGuesses(), state.msBeforeNext / 1000)
  }

  async function checkCode<T extends Record<string, string>> (purpose: 'register' | 'reset', email: string, code: string): Promise<T> {
    await limitCodeGuesses(email)
    const result = await codes.consume<T>(purpose, email, code)
    if (result.ok) return result.data
    if (result.reason !== 'expired') await codeGuesses.penalty(emailKey(hashSecret, email), 1)
    if (result.reason === 'wrong') throw new InvalidCode()
    if (result.reason === 'exhausted') throw new CodeExhausted()
    throw new CodeExpired()
  }

  async function claimSendSlot (purpose: 'register' | 'reset', email: string): Promise<void> {
    const wait = await codes.claimSendSlot(purpose, email)
    if (wait > 0) throw withRetryAfter(new CodeCooldown(), wait)
  }

  const mailJobId = (kind: string, email: string): string => `${kind}-${emailKey(hashSecret, email)}-${randomToken(9)}`

  /** Starts a registration: 202 whatever the email, so the answer never tells whether it has an account. */
  async function register (input: { email: string, username: string, password: string }): Promise<void> {
    const email = input.email.toLowerCase()
    const usernameLower = input.username.toLowerCase()
    assertAcceptablePassword(input.password)

    if (await users.findByUsername(usernameLower)) throw new UsernameTaken()
    // A username is held for the pending registration, so two people cannot
    // both be promised it.
    const holder = emailKey(hashSecret, email)
    const held = await redis.set(usernameHoldKey(usernameLower), holder, 'EX', USERNAME_HOLD_S, 'NX')
    if (held !== 'OK' && await redis.get(usernameHoldKey(usernameLower)) !== holder) throw new UsernameTaken()

    try {
      await claimSendSlot('register', email)
    } catch (err) {
      if (held === 'OK') await redis.del(usernameHoldKey(usernameLower))
      throw err
    }
    // Hashing happens for known emails too, so both take the same time.
    const passwordHash = await hashPassword(input.password)
    const existing = await users.findByEmail(email)
    if (existing) {
      if (held === 'OK') await redis.del(usernameHoldKey(usernameLower))
      await enqueueMail(mailJobId('already', email), alreadyRegisteredMail(email))
      return
    }
    await redis.expire(usernameHoldKey(usernameLower), USERNAME_HOLD_S)
    const code = await codes.issue('register', email, { username: input.username, passwordHash })
    await enqueueMail(mailJobId('register', email), registrationCodeMail(email, input.username, code))
  }

  async function resendRegistration (rawEmail: string): Promise<void> {
    const email = rawEmail.toLowerCase()
    await claimSendSlot('register', email)
    const reissued = await codes.reissue('register', email)
    if (!reissued) return
    const username = reissued.data.username ?? ''
    await redis.expire(usernameHoldKey(username.toLowerCase()), USERNAME_HOLD_S)
    await enqueueMail(mailJobId('register', email), registrationCodeMail(email, username, reissued.code))
  }

  async function verifyRegistration (input: { email: string, code: string }, meta: SessionMeta): Promise<SignedIn> {
    const email = input.email.toLowerCase()
    const data = await checkCode<{ username: string, passwordHash: string }>('register', email, input.code)
    let user: UserDoc
    try {
      user = await users.create({ email, username: data.username, passwordHash: data.passwordHash })
    } catch (err) {
      if (err instanceof DuplicateUserError) throw err.field === 'email' ? new AccountExists() : new UsernameTaken()
      throw err
    } finally {
      await redis.del(usernameHoldKey(data.username.toLowerCase()))
    }
    await codes.discard('register', email)
    await codeGuesses.delete(emailKey(hashSecret, email))
    return signIn(user, meta)
  }

  async function login (input: { login: string, password: string }, meta: SessionMeta): Promise<SignedIn> {
    const found = await users.findByLogin(input.login)
    // An erased account is as unknown as one that never existed; bots have no password.
    const user = found?.deletedAt === undefined && found?.bot === undefined ? found : null
    // Unknown logins are locked out like real accounts, so lockouts reveal nothing.
    const lockKey = user ? `user:${user._id.toHexString()}` : `login:${emailKey(hashSecret, input.login.toLowerCase())}`
    const state = await loginFailures.get(lockKey)
    if (state && state.consumedPoints >= loginFailures.points) throw withRetryAfter(new AccountLocked(), state.msBeforeNext / 1000)

    if (!user) {
      await burnVerification(input.password)
      await loginFailures.penalty(lockKey, 1)
      throw new InvalidCredentials()
    }
    if (!await verifyPassword(user.passwordHash, input.password)) {
      await loginFailures.penalty(lockKey, 1)
      throw new InvalidCredentials()
    }
    await loginFailures.delete(lockKey)
    if (needsRehash(user.passwordHash)) await users.setPassword(user._id, await hashPassword(input.password))
    return signIn(user, meta)
  }

  async function refresh (refreshToken: string | undefined): Promise<Omit<SignedIn, 'user'> & { userId: string }> {
    if (!refreshToken) throw new InvalidRefreshToken()
    const outcome = await sessions.refresh(refreshToken)
    if (!outcome.ok) throw outcome.reason === 'reused' ? new RefreshTokenReused() : new InvalidRefreshToken()
    return { userId: outcome.userId, sessionId: outcome.sessionId, refreshToken: outcome.refreshToken, accessToken: await signAccessToken(outcome.userId, outcome.sessionId) }
  }

  /** 202 for any email; a code is mailed only when there is an account. */
  async function forgotPassword (rawEmail: string): Promise<void> {
    const email = rawEmail.toLowerCase()
    await claimSendSlot('reset', email)
    const user = await users.findByEmail(email)
    if (!user) return
    const code = await codes.issue('reset', email, { userId: user._id.toHexString() })
    await enqueueMail(mailJobId('reset', email), passwordResetCodeMail(email, user.username, code))
  }

  async function resetPassword (input: { email: string, code: string, newPassword: string }): Promise<void> {
    const email = input.email.toLowerCase()
    // A weak new password must not burn the code.
    assertAcceptablePassword(input.newPassword)
    const data = await checkCode<{ userId: string }>('reset', email, input.code)
    const user = await users.findById(data.userId)
    if (!user) throw new CodeExpired()
    await users.setPassword(user._id, await hashPassword(input.newPassword))
    await codes.discard('reset', email)
    await codeGuesses.delete(emailKey(hashSecret, email))
    await loginFailures.delete(`user:${data.userId}`)
    await sessions.revokeAll(data.userId)
  }

  async function changePassword (userId: string, sessionId: string, input: { currentPassword: string, newPassword: string }): Promise<void> {
    const user = await users.findById(userId)
    if (!user) throw new InvalidCredentials()
    const lockKey = `user:${userId}`
    const state = await loginFailures.get(lockKey)
    if (state && state.consumedPoints >= loginFailures.points) throw withRetryAfter(new AccountLocked(), state.msBeforeNext / 1000)
    if (!await verifyPassword(user.passwordHash, input.currentPassword)) {
      await loginFailures.penalty(lockKey, 1)
      throw new WrongPassword()
    }
    assertAcceptablePassword(input.newPassword)
    await users.setPassword(user._id, await hashPassword(input.newPassword))
    await sessions.revokeAll(userId, sessionId)
  }

  /** Checks the user's password before something irreversible (erasing the account); wrong guesses count towards the lockout. */
  async function confirmPassword (userId: string, password: string): Promise<UserDoc> {
    const user = await users.findById(userId)
    if (!user || user.deletedAt !== undefined) throw new InvalidCredentials()
    const lockKey = `user:${userId}`
    const state = await loginFailures.get(lockKey)
    if (state && state.consumedPoints >= loginFailures.points) throw withRetryAfter(new AccountLocked(), state.msBeforeNext / 1000)
    if (!await verifyPassword(user.passwordHash, password)) {
      await loginFailures.penalty(lockKey, 1)
      throw new WrongPassword()
    }
    return user
  }

  return { register, resendRegistration, verifyRegistration, login, refresh, forgotPassword, resetPassword, changePassword, confirmPassword }
}
