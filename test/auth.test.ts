import t, { type Test } from 'tap'
import type { ConfigInput } from '../schemas/config.js'
import { sessionKey } from '../services/sessions.js'
import { build, redisKeys, uniqueId } from './helper.js'
import { codeIn, startSmtp } from './smtp.js'
import { cookieValue, registerUser } from './accounts.js'

async function setup (t: Test, overrides: ConfigInput = {}) {
  const smtp = await startSmtp()
  t.teardown(smtp.close)
  const app = await build(t, { SMTP_URL: smtp.url, AUTH_RATE_LIMIT_MAX: 1000, ...overrides })
  return { app, smtp }
}

const mailsTo = (smtp: Awaited<ReturnType<typeof startSmtp>>, email: string) => smtp.received.filter((m) => m.to.includes(email))
const settle = () => new Promise((resolve) => setTimeout(resolve, 400))

t.test('register → code by mail → verify creates the user and signs in', async (t) => {
  const { app, smtp } = await setup(t)
  const email = `Ada_${uniqueId()}@Example.com`
  const res = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: 'Ada_L', password: 'analytical engine 1843' } })
  t.equal(res.statusCode, 202)
  t.equal(await app.mongo.db.collection('users').countDocuments(), 0, 'no user exists before verification')

  const mail = await smtp.waitFor((m) => m.to.includes(email.toLowerCase()))
  t.match(mail.raw, /Subject: Your Parley verification code/)
  const code = codeIn(mail)
  t.match(code, /^\d{6}$/)

  const pending = await redisKeys(app, 'otp:register:*')
  t.equal(pending.length, 1)
  const stored = await app.redis.hgetall(pending[0]!)
  t.notOk(Object.values(stored).some((v) => v.includes(code)), 'the code is stored only hashed')
  t.notOk(Object.values(stored).some((v) => v.includes('analytical engine')), 'the password is stored only hashed')
  const ttl = await app.redis.ttl(pending[0]!)
  t.ok(ttl > 0 && ttl <= 300, 'the pending registration expires within 5 minutes')

  const verified = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })
  t.equal(verified.statusCode, 201)
  const body = verified.json()
  t.equal(body.user.email, email.toLowerCase())
  t.equal(body.user.username, 'Ada_L')
  t.equal(body.tokenType, 'Bearer')
  t.notOk('refreshToken' in body, 'refresh token only in the cookie by default')
  const access = verified.cookies.find((c) => c.name === 'access_token')!
  const refresh = verified.cookies.find((c) => c.name === 'refresh_token')!
  t.ok(access.httpOnly && refresh.httpOnly, 'cookies are httpOnly')
  t.equal(access.sameSite, 'Strict')
  t.equal(refresh.path, '/api/auth', 'refresh cookie is path-limited')
  t.equal(access.maxAge, 900)
  t.equal(refresh.maxAge, 604800)

  const user = await app.mongo.db.collection('users').findOne({ email: email.toLowerCase() })
  t.match(user?.passwordHash, /^\$argon2id\$v=19\$m=19456,p=1,t=2\$/, 'argon2id with the OWASP parameters')

  const me = await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${body.accessToken}` } })
  t.equal(me.statusCode, 200)
  t.equal(me.json().username, 'Ada_L')
  const meByCookie = await app.inject({ url: '/api/auth/me', cookies: { access_token: access.value } })
  t.equal(meByCookie.statusCode, 200, 'the access cookie works too')

  const replay = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })
  t.equal(replay.statusCode, 400)
  t.equal(replay.json().code, 'CODE_EXPIRED', 'a code is single-use')
})

t.test('registering an email that has an account answers the same and mails a notice', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const res = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: user.email, username: `other_${uniqueId()}`, password: 'another fine password' } })
  t.equal(res.statusCode, 202)
  t.same(res.json(), { status: 'accepted', message: 'If the address can receive it, a mail is on its way.' })
  const notice = await smtp.waitFor((m) => m.to.includes(user.email) && /already have a Parley account/.test(m.raw))
  t.throws(() => codeIn(notice), 'the notice carries no code')
})

t.test('taken usernames are refused case-insensitively, also while pending', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const taken = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: `x_${uniqueId()}@example.com`, username: user.username.toUpperCase(), password: 'a perfectly good one' } })
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().code, 'USERNAME_TAKEN')

  const name = `pend_${uniqueId()}`
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: `a_${uniqueId()}@example.com`, username: name, password: 'a perfectly good one' } })).statusCode, 202)
  const held = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: `b_${uniqueId()}@example.com`, username: name, password: 'a perfectly good one' } })
  t.equal(held.json().code, 'USERNAME_TAKEN', 'a pending registration holds its username')
})

t.test('passwords: length bounds, no truncation, common ones refused', async (t) => {
  const { app } = await setup(t)
  const attempt = (password: string) => app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: `p_${uniqueId()}@example.com`, username: `p_${uniqueId()}`, password } })
  t.equal((await attempt('short7!')).json().code, 'VALIDATION_ERROR')
  t.equal((await attempt('x'.repeat(129))).json().code, 'VALIDATION_ERROR')
  t.equal((await attempt('password1')).json().code, 'WEAK_PASSWORD')
  t.equal((await attempt('iloveyou')).json().code, 'WEAK_PASSWORD')
  t.equal((await attempt('x'.repeat(128))).statusCode, 202, '128 characters are accepted')
})

t.test('resend: 60 s cooldown with retry-after, and the new code replaces the old', async (t) => {
  const { app, smtp } = await setup(t)
  const email = `r_${uniqueId()}@example.com`
  await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: `r_${uniqueId()}`, password: 'resend me a code' } })
  const first = codeIn(await smtp.waitFor((m) => m.to.includes(email)))

  const tooSoon = await app.inject({ method: 'POST', url: '/api/auth/register/resend', payload: { email } })
  t.equal(tooSoon.statusCode, 429)
  t.equal(tooSoon.json().code, 'CODE_COOLDOWN')
  t.ok(Number(tooSoon.headers['retry-after']) > 0 && Number(tooSoon.headers['retry-after']) <= 60)

  // Time travel: end the cooldown the way its TTL would.
  await Promise.all((await redisKeys(app, 'otp:cooldown:register:*')).map((key) => app.redis.del(key)))
  const resent = await app.inject({ method: 'POST', url: '/api/auth/register/resend', payload: { email } })
  t.equal(resent.statusCode, 202)
  await smtp.waitFor(() => mailsTo(smtp, email).length === 2)
  const second = codeIn(mailsTo(smtp, email)[1]!)

  if (first !== second) {
    const old = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code: first } })
    t.equal(old.json().code, 'INVALID_CODE', 'the old code no longer works')
  }
  const ok = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code: second } })
  t.equal(ok.statusCode, 201)

  const unknown = await app.inject({ method: 'POST', url: '/api/auth/register/resend', payload: { email: `nobody_${uniqueId()}@example.com` } })
  t.equal(unknown.statusCode, 202, 'resend for an unknown address answers the same')
})

t.test('five wrong codes invalidate the code; the sixth attempt fails even when right', async (t) => {
  const { app, smtp } = await setup(t)
  const email = `g_${uniqueId()}@example.com`
  await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: `g_${uniqueId()}`, password: 'guess me if you can' } })
  const code = codeIn(await smtp.waitFor((m) => m.to.includes(email)))
  const wrong = code === '000000' ? '000001' : '000000'
  const codes: string[] = []
  for (let i = 0; i < 5; i++) codes.push((await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code: wrong } })).json().code)
  t.same(codes, ['INVALID_CODE', 'INVALID_CODE', 'INVALID_CODE', 'INVALID_CODE', 'CODE_EXHAUSTED'])
  const sixth = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })
  t.equal(sixth.statusCode, 400)
  t.equal(sixth.json().code, 'CODE_EXPIRED')
  t.equal(await app.mongo.db.collection('users').countDocuments(), 0)
})

t.test('an expired code fails', async (t) => {
  const { app, smtp } = await setup(t)
  const email = `e_${uniqueId()}@example.com`
  await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: `e_${uniqueId()}`, password: 'expiring soon enough' } })
  const code = codeIn(await smtp.waitFor((m) => m.to.includes(email)))
  // Expire it the way Redis would at the end of its 5 minutes.
  for (const key of await redisKeys(app, 'otp:register:*')) await app.redis.pexpire(key, 1)
  await new Promise((resolve) => setTimeout(resolve, 20))
  const res = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })
  t.equal(res.json().code, 'CODE_EXPIRED')
})

t.test('concurrent verifications of one code create one user', async (t) => {
  const { app, smtp } = await setup(t)
  const email = `c_${uniqueId()}@example.com`
  await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: `c_${uniqueId()}`, password: 'race condition free' } })
  const code = codeIn(await smtp.waitFor((m) => m.to.includes(email)))
  const results = await Promise.all(Array.from({ length: 10 }, () => app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })))
  t.equal(results.filter((r) => r.statusCode === 201).length, 1, 'exactly one succeeds')
  t.ok(results.filter((r) => r.statusCode !== 201).every((r) => r.statusCode === 400), 'the others are refused')
  t.equal(await app.mongo.db.collection('users').countDocuments({ email }), 1)
})

t.test('login: by email or username; unknown user and wrong password look the same', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const byEmail = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.email.toUpperCase(), password: user.password } })
  t.equal(byEmail.statusCode, 200)
  t.ok(cookieValue(byEmail, 'access_token'))
  const byName = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.username, password: user.password } })
  t.equal(byName.statusCode, 200)

  const wrong = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.email, password: 'not the password' } })
  const unknown = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: `ghost_${uniqueId()}@example.com`, password: 'not the password' } })
  t.equal(wrong.statusCode, 401)
  t.same(wrong.json(), unknown.json(), 'same status, code and message')
})

t.test('per-account lockout after repeated login failures, for that account only', async (t) => {
  const { app, smtp } = await setup(t, { LOGIN_FAILURE_LIMIT: 3 })
  const victim = await registerUser(app, smtp)
  const other = await registerUser(app, smtp)
  for (let i = 0; i < 3; i++) {
    t.equal((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: victim.email, password: 'wrong guess!' } })).statusCode, 401)
  }
  const locked = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: victim.username, password: victim.password } })
  t.equal(locked.statusCode, 429)
  t.equal(locked.json().code, 'ACCOUNT_LOCKED')
  t.ok(Number(locked.headers['retry-after']) > 0)
  const fine = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: other.email, password: other.password } })
  t.equal(fine.statusCode, 200, 'other accounts are unaffected')
})

t.test('per-IP rate limit on auth routes answers 429 with retry-after', async (t) => {
  const { app } = await setup(t, { AUTH_RATE_LIMIT_MAX: 3 })
  const statuses: number[] = []
  let last
  for (let i = 0; i < 4; i++) {
    last = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: 'someone', password: 'whatever' } })
    statuses.push(last.statusCode)
  }
  t.same(statuses, [401, 401, 401, 429])
  t.equal(last!.json().code, 'RATE_LIMITED')
  t.ok(Number(last!.headers['retry-after']) > 0)
})

t.test('refresh rotates; a used refresh token ends the whole session', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)

  const first = await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: user.refreshToken } })
  t.equal(first.statusCode, 200)
  const rotated = cookieValue(first, 'refresh_token')!
  t.ok(rotated && rotated !== user.refreshToken, 'a new refresh token')
  const newAccess = first.json().accessToken as string
  t.equal((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${newAccess}` } })).statusCode, 200)

  const replay = await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: user.refreshToken } })
  t.equal(replay.statusCode, 401)
  t.equal(replay.json().code, 'REFRESH_TOKEN_REUSED')

  t.equal((await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: rotated } })).statusCode, 401, 'the thief-proof family is gone: the newest token is dead too')
  const me = await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${newAccess}` } })
  t.equal(me.json().code, 'SESSION_REVOKED', 'and so are its access tokens')
})

t.test('refresh from the body returns the new refresh token in the body', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const res = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: user.refreshToken } })
  t.equal(res.statusCode, 200)
  t.match(res.json().refreshToken, /^[\w-]{22}\.[\w-]{43}$/)
  const garbage = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: `${res.json().refreshToken.split('.')[0]}.${'A'.repeat(43)}` } })
  t.equal(garbage.json().code, 'INVALID_REFRESH_TOKEN', 'a forged token with a real session id is invalid…')
  const still = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: res.json().refreshToken } })
  t.equal(still.statusCode, 200, '…and does not end the session')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/refresh' })).json().code, 'INVALID_REFRESH_TOKEN', 'no token at all')
})

t.test('access and refresh tokens cannot stand in for each other', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const asAccess = await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${user.refreshToken}` } })
  t.equal(asAccess.statusCode, 401)
  const asRefresh = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: user.accessToken } })
  t.equal(asRefresh.statusCode, 401)
  t.equal(asRefresh.json().code, 'INVALID_REFRESH_TOKEN')
})

t.test('reads that run alongside the session check answer only once it passed', async (t) => {
  const { app, smtp } = await setup(t, { RATE_LIMIT_MAX: 4 })
  const user = await registerUser(app, smtp)
  const missing = '0123456789abcdef01234567'
  const reads = ['/api/auth/me', '/api/conversations', `/api/conversations/${missing}/messages`]
  const live = await Promise.all(reads.map((url) => app.inject({ url, headers: user.auth })))
  t.same(live.map((r) => r.statusCode), [200, 200, 404], 'a live session gets its data, or the read\'s own error')
  t.equal(live[0]!.json().id, user.id)

  let over = await app.inject({ url: '/api/auth/me', headers: user.auth })
  for (let i = 0; i < 10 && over.statusCode === 200; i++) over = await app.inject({ url: '/api/auth/me', headers: user.auth })
  t.equal(over.statusCode, 429, 'the budget (4 a minute here) is charged on these reads too')
  t.equal(over.json().code, 'RATE_LIMITED')
  t.notOk('email' in over.json(), 'and the refusal replaces the data that was read')

  await app.redis.del(sessionKey(app.jwt.decode<{ sid: string }>(user.accessToken)!.sid))
  for (const url of reads) {
    const res = await app.inject({ url, headers: user.auth })
    t.equal(res.statusCode, 401, url)
    t.equal(res.json().code, 'SESSION_REVOKED', `${url}: the refusal, never the data or the read's own 404`)
  }
})

t.test('tokens signed otherwise are refused: wrong key, alg none, wrong audience, expired', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const [header, payload] = user.accessToken.split('.') as [string, string]
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString())
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`
  const tampered = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: '000000000000000000000000' })).toString('base64url')}.${user.accessToken.split('.')[2]}`
  const wrongAud = app.jwt.sign({ sub: claims.sub, sid: claims.sid, typ: 'access' }, { aud: 'someone-else' })
  const expired = app.jwt.sign({ sub: claims.sub, sid: claims.sid, typ: 'access' }, { expiresIn: 1 })
  await new Promise((resolve) => setTimeout(resolve, 2100))
  for (const [name, token] of Object.entries({ none, tampered, wrongAud, expired })) {
    const res = await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } })
    t.equal(res.statusCode, 401, name)
  }
  t.equal((await app.inject({ url: '/api/auth/me' })).json().code, 'UNAUTHORIZED')
})

t.test('logout ends the session at once and clears cookies the way they were set', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const res = await app.inject({ method: 'POST', url: '/api/auth/logout', headers: user.auth })
  t.equal(res.statusCode, 200)
  const cleared = res.cookies.find((c) => c.name === 'refresh_token')!
  t.equal(cleared.path, '/api/auth')
  t.ok(cleared.expires && cleared.expires.getTime() < Date.now(), 'refresh cookie expired')
  const me = await app.inject({ url: '/api/auth/me', headers: user.auth })
  t.equal(me.statusCode, 401)
  t.equal(me.json().code, 'SESSION_REVOKED', 'the access token stops working before it expires')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: user.refreshToken } })).statusCode, 401)
})

t.test('sessions: list, revoke one, logout-all', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const phone = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'user-agent': 'ParleyPhone/1.0' }, payload: { login: user.email, password: user.password } })
  const phoneAuth = { authorization: `Bearer ${phone.json().accessToken}` }

  const list = await app.inject({ url: '/api/auth/sessions', headers: user.auth })
  t.equal(list.statusCode, 200)
  const sessions = list.json().sessions as Array<{ id: string, current: boolean, device: string }>
  t.equal(sessions.length, 2)
  t.equal(sessions.filter((s) => s.current).length, 1)
  const phoneSession = sessions.find((s) => s.device === 'ParleyPhone/1.0')!
  t.ok(phoneSession)

  const other = await registerUser(app, smtp)
  const foreign = await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${phoneSession.id}`, headers: other.auth })
  t.equal(foreign.statusCode, 404, "someone else's session does not exist for you")
  t.equal((await app.inject({ url: '/api/auth/me', headers: phoneAuth })).statusCode, 200)

  t.equal((await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${phoneSession.id}`, headers: user.auth })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/auth/me', headers: phoneAuth })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url: '/api/auth/sessions/not-a-session', headers: user.auth })).statusCode, 400)

  const again = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.email, password: user.password } })
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: user.auth })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/auth/me', headers: user.auth })).statusCode, 401)
  t.equal((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${again.json().accessToken}` } })).statusCode, 401)
})

t.test('forgot + reset password: same answer for unknown emails, every session ends, no sign-in', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)

  const unknownEmail = `nobody_${uniqueId()}@example.com`
  const unknown = await app.inject({ method: 'POST', url: '/api/auth/password/forgot', payload: { email: unknownEmail } })
  const known = await app.inject({ method: 'POST', url: '/api/auth/password/forgot', payload: { email: user.email } })
  t.equal(unknown.statusCode, 202)
  t.same(unknown.json(), known.json())
  const mail = await smtp.waitFor((m) => m.to.includes(user.email) && /password reset/.test(m.raw))
  await settle()
  t.equal(mailsTo(smtp, unknownEmail).length, 0, 'no mail for an unknown email')

  const weak = await app.inject({ method: 'POST', url: '/api/auth/password/reset', payload: { email: user.email, code: codeIn(mail), newPassword: 'password123' } })
  t.equal(weak.json().code, 'WEAK_PASSWORD')
  const reset = await app.inject({ method: 'POST', url: '/api/auth/password/reset', payload: { email: user.email, code: codeIn(mail), newPassword: 'a brand new secret' } })
  t.equal(reset.statusCode, 200, 'the weak attempt did not burn the code')
  t.equal(reset.cookies.length, 0, 'reset does not sign in')
  t.equal((await app.inject({ url: '/api/auth/me', headers: user.auth })).statusCode, 401, 'old sessions are gone')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.email, password: user.password } })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.email, password: 'a brand new secret' } })).statusCode, 200)
})

t.test('change password ends the other sessions, keeps this one', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const other = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: user.email, password: user.password } })
  const wrong = await app.inject({ method: 'POST', url: '/api/auth/password/change', headers: user.auth, payload: { currentPassword: 'nope nope', newPassword: 'changed and strong' } })
  t.equal(wrong.statusCode, 403)
  t.equal(wrong.json().code, 'WRONG_PASSWORD')
  const ok = await app.inject({ method: 'POST', url: '/api/auth/password/change', headers: user.auth, payload: { currentPassword: user.password, newPassword: 'changed and strong' } })
  t.equal(ok.statusCode, 200)
  t.equal((await app.inject({ url: '/api/auth/me', headers: user.auth })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${other.json().accessToken}` } })).statusCode, 401)
})

t.test('CSRF: cookie-authenticated unsafe requests from another site are refused', async (t) => {
  const { app, smtp } = await setup(t, { CORS_ORIGINS: 'https://app.example' })
  const user = await registerUser(app, smtp)
  const cookies = { access_token: user.accessToken, refresh_token: user.refreshToken }
  const evil = await app.inject({ method: 'POST', url: '/api/auth/logout', cookies, headers: { origin: 'https://evil.example' } })
  t.equal(evil.statusCode, 403)
  t.equal(evil.json().code, 'CSRF_REJECTED')
  const fetchMeta = await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies, headers: { 'sec-fetch-site': 'cross-site' } })
  t.equal(fetchMeta.json().code, 'CSRF_REJECTED')
  const form = await app.inject({ method: 'POST', url: '/api/auth/password/change', cookies, headers: { 'content-type': 'text/plain', origin: 'https://app.example' }, payload: '{"currentPassword":"x","newPassword":"y"}' })
  t.equal(form.statusCode, 415, 'text/plain bodies are not parsed')
  t.equal((await app.inject({ url: '/api/auth/me', cookies })).statusCode, 200, 'the session survived')
  const allowed = await app.inject({ method: 'POST', url: '/api/auth/logout', cookies, headers: { origin: 'https://app.example' } })
  t.equal(allowed.statusCode, 200, 'an allowlisted origin may')
})

t.test('hostile inputs are 4xx and never reach a query', async (t) => {
  const { app } = await setup(t)
  const cases: Array<[string, unknown]> = [
    ['/api/auth/login', { login: { $ne: null }, password: 'x' }],
    ['/api/auth/login', { login: 'someone', password: { $gt: '' } }],
    ['/api/auth/login', { login: 'someone', password: 'x', $where: '1' }],
    ['/api/auth/register', { email: 'not-an-email', username: 'valid_name', password: 'long enough pw' }],
    ['/api/auth/register', { email: 'a@example.com', username: 'bad name!', password: 'long enough pw' }],
    ['/api/auth/register/verify', { email: 'a@example.com', code: 123456 }],
    ['/api/auth/register/verify', { email: 'a@example.com', code: '12345a' }],
    ['/api/auth/password/forgot', { email: ['a@example.com'] }],
    ['/api/auth/login', []],
    ['/api/auth/login', 'just a string'],
    ['/api/auth/login', null]
  ]
  for (const [url, payload] of cases) {
    const res = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
    t.equal(res.statusCode, 400, `${url} ${JSON.stringify(payload)}`)
    t.equal(res.json().code, 'VALIDATION_ERROR')
  }
  const big = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ login: 'x'.repeat(2_000_000), password: 'x' }) })
  t.equal(big.statusCode, 413)
  t.equal(big.json().code, 'BODY_TOO_LARGE')
})

t.test('secure deployments use __Host- and __Secure- cookies', async (t) => {
  const { app, smtp } = await setup(t, { COOKIE_SECURE: true })
  const email = `s_${uniqueId()}@example.com`
  await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: `s_${uniqueId()}`, password: 'secure by default' } })
  const code = codeIn(await smtp.waitFor((m) => m.to.includes(email)))
  const res = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })
  const access = res.cookies.find((c) => c.name === '__Host-access_token')!
  const refresh = res.cookies.find((c) => c.name === '__Secure-refresh_token')!
  t.ok(access.secure && access.path === '/' && access.domain === undefined, '__Host- rules: Secure, Path=/, no Domain')
  t.ok(refresh.secure && refresh.path === '/api/auth')
  t.equal((await app.inject({ url: '/api/auth/me', cookies: { '__Host-access_token': access.value } })).statusCode, 200)
})

t.test('code guesses are limited per address across codes (429 with retry-after)', async (t) => {
  const { app, smtp } = await setup(t, { CODE_GUESS_LIMIT: 3 })
  const email = `l_${uniqueId()}@example.com`
  await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, username: `l_${uniqueId()}`, password: 'limited guesses here' } })
  const code = codeIn(await smtp.waitFor((m) => m.to.includes(email)))
  const wrong = code === '111111' ? '222222' : '111111'
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code: wrong } })).json().code, 'INVALID_CODE')
  const limited = await app.inject({ method: 'POST', url: '/api/auth/register/verify', payload: { email, code } })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().code, 'TOO_MANY_GUESSES', 'even the right code waits')
  t.ok(Number(limited.headers['retry-after']) > 0)
})

t.test('a session ends at its absolute lifetime, however often it is refreshed', async (t) => {
  const { app, smtp } = await setup(t)
  const user = await registerUser(app, smtp)
  const sessionId = user.refreshToken.split('.')[0]!
  // Fast-forward to the end of its lifetime.
  await app.redis.hset(sessionKey(sessionId), 'expiresAt', String(Date.now() - 1000))
  const res = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: user.refreshToken } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'INVALID_REFRESH_TOKEN')
  t.equal((await app.inject({ url: '/api/auth/me', headers: user.auth })).json().code, 'SESSION_REVOKED', 'and its access tokens with it')
})
