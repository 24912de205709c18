import t from 'tap'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from './helper.js'
import { startMongo } from '../scripts/embedded.js'

const shape = { statusCode: Number, code: String, error: String, message: String }

t.test('every framework error has the one shape and a stable code', async (t) => {
  const app = await build(t)

  const notFound = await app.inject('/no/such/route')
  t.equal(notFound.statusCode, 404)
  t.match(notFound.json(), { ...shape, code: 'ROUTE_NOT_FOUND', error: 'Not Found' })

  const malformed = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, payload: '{"login": "x",' })
  t.equal(malformed.statusCode, 400)
  t.match(malformed.json(), { ...shape, code: 'INVALID_JSON' })

  const empty = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, payload: '' })
  t.equal(empty.statusCode, 400)
  t.equal(empty.json().code, 'INVALID_JSON')

  const tooLarge = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, payload: `{"login":"${'a'.repeat(1_100_000)}"}` })
  t.equal(tooLarge.statusCode, 413)
  t.match(tooLarge.json(), { ...shape, code: 'BODY_TOO_LARGE' })

  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
    const unsupported = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': type }, payload: 'login=x&password=y' })
    t.equal(unsupported.statusCode, 415, type)
    t.match(unsupported.json(), { ...shape, code: 'UNSUPPORTED_MEDIA_TYPE' })
  }

  const invalid = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { email: 'not-an-email', username: 'valid_name', password: 'long enough' } })
  t.equal(invalid.statusCode, 400)
  t.match(invalid.json(), { ...shape, code: 'VALIDATION_ERROR' })
  t.match(invalid.json().message, /email/, 'the message names the failing field')

  // Multipart only where an upload is taken.
  const { createUser } = await import('./accounts.js')
  const ada = await createUser(app)
  const boundary = 'x-boundary'
  const form = `--${boundary}\r\ncontent-disposition: form-data; name="a"\r\n\r\nb\r\n--${boundary}--\r\n`
  for (const url of ['/api/ws/ticket', '/api/auth/logout-all', '/api/conversations']) {
    const multipart = await app.inject({ method: 'POST', url, headers: { ...ada.auth, 'content-type': `multipart/form-data; boundary=${boundary}` }, payload: form })
    t.equal(multipart.statusCode, 415, `multipart to ${url}`)
    t.match(multipart.json(), { ...shape, code: 'UNSUPPORTED_MEDIA_TYPE' })
  }

  // Integers are bounded by what the store holds exactly; cursors never turn into floats.
  const conversation = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'g', memberIds: [] } })).json().id
  for (const since of ['1e27', '9007199254740992', '1.5', '-1']) {
    const huge = await app.inject({ method: 'GET', url: `/api/conversations/${conversation}/changes?since=${since}`, headers: ada.auth })
    t.equal(huge.statusCode, 400, `since=${since}`)
    t.equal(huge.json().code, 'VALIDATION_ERROR')
  }
  t.equal((await app.inject({ method: 'GET', url: `/api/conversations/${conversation}/changes?since=9007199254740991`, headers: ada.auth })).statusCode, 200, 'the largest safe integer is fine')

  // Over-long and undecodable path parameters: the one shape, the URL not echoed.
  const longParam = 'a'.repeat(5000)
  const long = await app.inject({ method: 'GET', url: `/api/users/${longParam}`, headers: ada.auth })
  t.equal(long.statusCode, 400)
  t.match(long.json(), { ...shape, code: 'VALIDATION_ERROR' })
  t.notMatch(long.body, longParam)
  const badUrl = await app.inject({ method: 'GET', url: '/api/users/%E0%A4%A', headers: ada.auth })
  t.equal(badUrl.statusCode, 400)
  t.match(badUrl.json(), { ...shape, code: 'BAD_URL' })
  t.notMatch(badUrl.body, /%E0/)

  const extra = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: 'someone', password: 'x', admin: true } })
  t.equal(extra.statusCode, 400)
  t.equal(extra.json().code, 'VALIDATION_ERROR', 'unknown properties are refused, not dropped')
})

t.test('a 5xx says nothing of its cause and carries the request id', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'parley-mongo-'))
  await chmod(dataDir, 0o711) // so the embedded default (PostgreSQL, under its own account) can run in it
  const mongo = await startMongo({ dataDir })
  t.teardown(async () => { await mongo.stop(); await rm(dataDir, { recursive: true, force: true }) })
  const app = await build(t, { MONGODB_URI: `${mongo.url}?serverSelectionTimeoutMS=300` })
  await mongo.stop()

  const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: 'someone', password: 'whatever' } })
  t.equal(res.statusCode, 503, 'a lost database is a 503 the client may retry, not a 500')
  t.same(res.json(), { statusCode: 503, code: 'SERVICE_UNAVAILABLE', error: 'Service Unavailable', message: 'A service this request needs is unavailable; retry shortly' })
  t.ok(Number(res.headers['retry-after']) > 0)
  t.notMatch(res.body, /mongo|ECONNREFUSED|127\.0\.0\.1|stack/i)
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)

  // Once the outage is noticed, requests are refused before any work: that
  // answer must not name the dependency either.
  for (let waited = 0; !app.dependenciesDown().includes('mongodb'); waited += 50) {
    if (waited > 20_000) throw new Error('the driver never reported the database down')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const refused = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { login: 'someone', password: 'whatever' } })
  t.same(refused.json(), { statusCode: 503, code: 'SERVICE_UNAVAILABLE', error: 'Service Unavailable', message: 'A service this request needs is unavailable; retry shortly' }, 'refused up front: the same answer')
  t.notMatch(refused.body, /mongo|redis/i)
})
