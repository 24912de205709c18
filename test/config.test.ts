import { getHeapStatistics } from 'node:v8'
import t from 'tap'
import { buildApp } from '../app.js'
import { loadConfig } from '../schemas/config.js'

const base = { MONGODB_URI: 'mongodb://127.0.0.1:1/', REDIS_URL: 'redis://127.0.0.1:1' }

t.test('defaults apply and the type is derived from the schema', async (t) => {
  const config = loadConfig(base, {})
  t.equal(config.PORT, 3000)
  t.equal(config.NODE_ENV, 'development')
  t.equal(config.COOKIE_SECURE, false)
  t.ok(config.JWT_SECRET.length >= 32, 'a development secret is generated')
  t.same(config.corsOrigins, [])
})

t.test('kept pages default to 1/32 of the heap limit each; a configured size wins', async (t) => {
  t.equal(loadConfig(base, {}).KEPT_PAGES_MB, Math.floor(getHeapStatistics().heap_size_limit / 32 / 2 ** 20))
  t.equal(loadConfig({ ...base, KEPT_PAGES_MB: '0' }, {}).KEPT_PAGES_MB, 0)
  t.equal(loadConfig(base, { KEPT_PAGES_MB: '256' }).KEPT_PAGES_MB, 256)
  t.throws(() => loadConfig(base, { KEPT_PAGES_MB: '-1' }), /KEPT_PAGES_MB/)
})

t.test('environment strings are coerced and validated', async (t) => {
  const config = loadConfig({}, { ...base, PORT: '8080', EMAIL_WORKER: 'false', CORS_ORIGINS: 'https://a.example, http://localhost:5173' })
  t.equal(config.PORT, 8080)
  t.equal(config.EMAIL_WORKER, false)
  t.same(config.corsOrigins, ['https://a.example', 'http://localhost:5173'])
})

t.test('bad values stop boot with a message naming them', async (t) => {
  t.throws(() => loadConfig({ ...base, PORT: 'eighty' }, {}), /PORT/)
  t.throws(() => loadConfig({ ...base, PORT: 70000 }, {}), /PORT/)
  t.throws(() => loadConfig({ ...base, MONGODB_URI: 'http://db' }, {}), /MONGODB_URI/)
  t.throws(() => loadConfig({ REDIS_URL: base.REDIS_URL }, {}), /MONGODB_URI/, 'required value missing')
  t.throws(() => loadConfig({ ...base, LOG_LEVEL: 'loud' }, {}), /LOG_LEVEL/)
  t.throws(() => loadConfig({ ...base, JWT_SECRET: 'short' }, {}), /JWT_SECRET/)
  t.throws(() => loadConfig({ ...base, CORS_ORIGINS: 'https://a.example/path' }, {}), /CORS_ORIGINS/)
  t.throws(() => loadConfig({ ...base, CORS_ORIGINS: 'not a url' }, {}), /CORS_ORIGINS/)
})

t.test('unknown keys are refused', async (t) => {
  t.throws(() => loadConfig({ ...base, MONGO_URL: 'x' } as never, {}), /Unknown configuration keys: MONGO_URL/)
})

t.test('production demands real secrets and SMTP', async (t) => {
  const secret = 'x'.repeat(40)
  t.throws(() => loadConfig({ ...base, NODE_ENV: 'production' }, {}), /JWT_SECRET is required/)
  t.throws(() => loadConfig({ ...base, NODE_ENV: 'production', JWT_SECRET: secret, HASH_SECRET: secret, SMTP_URL: 'smtp://m' }, {}), /must differ/)
  t.throws(() => loadConfig({ ...base, NODE_ENV: 'production', JWT_SECRET: secret, HASH_SECRET: 'y'.repeat(40) }, {}), /SMTP_URL/)
  t.throws(() => loadConfig({ ...base, NODE_ENV: 'production', JWT_SECRET: secret, HASH_SECRET: 'y'.repeat(40), SMTP_URL: 'smtp://m:25' }, {}), /VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY are required/)
  const vapid = { VAPID_PUBLIC_KEY: 'B'.repeat(87), VAPID_PRIVATE_KEY: 'p'.repeat(43) }
  t.throws(() => loadConfig({ ...base, VAPID_PUBLIC_KEY: vapid.VAPID_PUBLIC_KEY }, {}), /go together/)
  t.throws(() => loadConfig({ ...base, OUTBOUND_ALLOWED_ADDRESSES: '10.0.0.0/33' }, {}), /not an address or CIDR/)
  t.same(loadConfig({ ...base, OUTBOUND_ALLOWED_ADDRESSES: '127.0.0.1, ::1,10.0.0.0/8' }, {}).outboundAllowedAddresses, ['127.0.0.1', '::1', '10.0.0.0/8'])
  const config = loadConfig({ ...base, NODE_ENV: 'production', JWT_SECRET: secret, HASH_SECRET: 'y'.repeat(40), SMTP_URL: 'smtp://m:25', ...vapid }, {})
  t.equal(config.COOKIE_SECURE, true, 'secure cookies by default in production')
})

t.test('buildApp refuses to boot on invalid configuration', async (t) => {
  await t.rejects(buildApp({ ...base, PORT: -1 }), /PORT/)
})

t.test('instances on one Redis: generated secrets are shared, configured ones must agree', async (t) => {
  const { build } = await import('./helper.js')
  const { createUser } = await import('./accounts.js')
  const one = await build(t)
  const { MONGODB_DB, REDIS_PREFIX } = one.config
  // No secrets configured on either: the second adopts the first's.
  const two = await build(t, { MONGODB_DB, REDIS_PREFIX })
  t.equal(two.config.JWT_SECRET, one.config.JWT_SECRET)
  t.equal(two.config.HASH_SECRET, one.config.HASH_SECRET)
  const ada = await createUser(one)
  t.equal((await two.inject({ method: 'GET', url: '/api/users/me', headers: ada.auth })).statusCode, 200, 'a token of one instance works on the other')

  // Different secrets while those run: refused at boot, with a message that says why.
  await t.rejects(build(t, { MONGODB_DB, REDIS_PREFIX, JWT_SECRET: 'x'.repeat(40), HASH_SECRET: 'y'.repeat(40) }), { name: 'SecretsMismatchError', message: /same values/ })
  // The same ones, configured explicitly: fine.
  const three = await build(t, { MONGODB_DB, REDIS_PREFIX, JWT_SECRET: one.config.JWT_SECRET, HASH_SECRET: one.config.HASH_SECRET })
  t.equal((await three.inject({ method: 'GET', url: '/api/users/me', headers: ada.auth })).statusCode, 200)
})
