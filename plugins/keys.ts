// Every instance behind one load balancer must sign and check with the same
// JWT_SECRET and HASH_SECRET, or a token from one is refused by another. Two
// safeguards, both through the Redis the instances share:
// - Secrets that were not configured (development, tests) are generated once
//   and shared: the first instance stores its pair, the others adopt it.
// - A check value of the secrets (an HMAC, never the secrets) is kept in Redis
//   while any instance runs; an instance whose secrets disagree refuses to start.
import fp from 'fastify-plugin'
import { createHmac } from 'node:crypto'

const KEY_CHECK_TTL_S = 30

// Sets the value when absent; answers the value in place when it differs.
const claimScript = `
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return false`

export class SecretsMismatchError extends Error {
  override name = 'SecretsMismatchError'
}

export default fp(async (fastify) => {
  const { redis, config } = fastify
  if (config.secretsGenerated) {
    const mine = JSON.stringify({ jwt: config.JWT_SECRET, hash: config.HASH_SECRET })
    // No expiry: tokens then survive restarts of a development server too.
    const shared = await redis.set('secrets:generated', mine, 'NX', 'GET') ?? mine
    const { jwt, hash } = JSON.parse(shared) as { jwt: string, hash: string }
    config.JWT_SECRET = jwt
    config.HASH_SECRET = hash
  }

  const check = createHmac('sha256', config.JWT_SECRET).update('parley key check').digest('base64url').slice(0, 22) + '.' +
    createHmac('sha256', config.HASH_SECRET).update('parley key check').digest('base64url').slice(0, 22)
  const claim = async (): Promise<string | null> => await redis.eval(claimScript, 1, 'secrets:check', check, KEY_CHECK_TTL_S) as string | null
  if (await claim() !== null) {
    throw new SecretsMismatchError('Another running instance on this Redis uses a different JWT_SECRET or HASH_SECRET: ' +
      'every instance must be given the same values (tokens signed by one are checked by the others). ' +
      `If the secrets were rotated on purpose, stop the old instances first (their check lapses ${KEY_CHECK_TTL_S} s after).`)
  }
  const timer = setInterval(() => {
    claim()
      .then((other) => { if (other !== null) fastify.log.error('another instance on this Redis runs with different JWT_SECRET / HASH_SECRET: tokens will be refused across instances') })
      .catch(() => { /* Redis away: /health/ready says so */ })
  }, (KEY_CHECK_TTL_S * 1000) / 3)
  timer.unref()
  fastify.addHook('onClose', async () => { clearInterval(timer) })
}, { name: 'keys', dependencies: ['config', 'redis'] })
