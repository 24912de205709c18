// Helpers for tests that need signed-in users: real registration through the
// API, with the code read from the mail that the real SMTP server received.
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { codeIn, type TestSmtp } from './smtp.js'
import { uniqueId } from './helper.js'

export interface TestUser {
  id: string
  email: string
  username: string
  password: string
  accessToken: string
  refreshToken: string
  auth: { authorization: string }
}

export function cookieValue (res: LightMyRequestResponse, name: string): string | undefined {
  return (res.cookies as Array<{ name: string, value: string }>).find((c) => c.name === name)?.value
}

export async function registerUser (app: FastifyInstance, smtp: TestSmtp, overrides: Partial<Pick<TestUser, 'email' | 'username' | 'password'>> = {}): Promise<TestUser> {
  const id = uniqueId()
  const email = overrides.email ?? `user_${id}@example.com`
  const username = overrides.username ?? `u_${id}`
  const password = overrides.password ?? `pw-${id}-long-enough`
  const started = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username, password } })
  if (started.statusCode !== 202) throw new Error(`register failed: ${started.body}`)
  const mail = await smtp.waitFor((m) => m.to.includes(email) && /verification code/.test(m.raw))
  const verified = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code: codeIn(mail), includeRefreshToken: true } })
  if (verified.statusCode !== 201) throw new Error(`verify failed: ${verified.body}`)
  const body = verified.json()
  return { id: body.user.id, email, username, password, accessToken: body.accessToken, refreshToken: body.refreshToken, auth: { authorization: `Bearer ${body.accessToken}` } }
}

let fixtureHash: Promise<string> | undefined

/**
 * A user created straight through the services (the registration flow itself
 * is exercised end to end in auth.test.ts), signed in with a real session.
 */
export async function createUser (app: FastifyInstance, name?: string): Promise<TestUser> {
  const { hashPassword } = await import('../services/passwords.js')
  fixtureHash ??= hashPassword('fixture password 1')
  const id = uniqueId()
  const username = name ?? `u_${id}`
  const email = `${username.toLowerCase()}_${id}@example.com`
  const user = await app.users.create({ email, username, passwordHash: await fixtureHash })
  const userId = user._id.toHexString()
  const { sessionId, refreshToken } = await app.sessions.create(userId)
  const accessToken = app.jwt.sign({ sub: userId, sid: sessionId, typ: 'access' })
  return { id: userId, email, username, password: 'fixture password 1', accessToken, refreshToken, auth: { authorization: `Bearer ${accessToken}` } }
}

/** The direct conversation of two users (created by the first). */
export async function directConversation (app: FastifyInstance, a: TestUser, b: TestUser): Promise<string> {
  return (await app.inject({ method: 'POST', url: '/api/conversations', headers: a.auth, payload: { type: 'direct', userId: b.id } })).json().id
}
