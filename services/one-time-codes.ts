// Six-digit codes sent by mail. Stored only as a keyed hash, with the data the
// flow needs, in one Redis hash that expires after 5 minutes. Every guess is
// counted atomically before it is compared, so at most 5 comparisons are ever
// made per code; the 5th wrong one deletes it. A right guess consumes the code
// with DEL, so of concurrent right guesses exactly one wins.
import type { RedisClient } from './redis-client.js'
import { emailKey, keyedHash, sameHash, sixDigitCode } from './crypto.js'

export const CODE_TTL_S = 300
export const RESEND_COOLDOWN_S = 60
export const MAX_GUESSES = 5

export type CodePurpose = 'register' | 'reset'

export type CodeCheck<T> =
  | { ok: true, data: T }
  | { ok: false, reason: 'expired' | 'wrong' | 'exhausted' }

export type CodeService = ReturnType<typeof createCodeService>

export function createCodeService (redis: RedisClient, hashSecret: string) {
  // A code and its resend cooldown share a hash slot (discard() deletes both at once).
  const key = (purpose: CodePurpose, email: string): string => `otp:${purpose}:{${emailKey(hashSecret, email)}}`
  const cooldownKey = (purpose: CodePurpose, email: string): string => `otp:cooldown:${purpose}:{${emailKey(hashSecret, email)}}`
  const hashCode = (purpose: CodePurpose, email: string, code: string): string => keyedHash(hashSecret, `code:${purpose}:${email}:${code}`)

  /**
   * Starts the cooldown for sending a code to this address. Returns 0 when a
   * code may be sent now, else the seconds to wait.
   */
  async function claimSendSlot (purpose: CodePurpose, email: string): Promise<number> {
    const set = await redis.set(cooldownKey(purpose, email), '1', 'EX', RESEND_COOLDOWN_S, 'NX')
    if (set === 'OK') return 0
    return Math.max(1, await redis.ttl(cooldownKey(purpose, email)))
  }

  /** Issues a new code (replacing any earlier one) and stores `data` with it. Returns the plain code, to be mailed. */
  async function issue (purpose: CodePurpose, email: string, data: Record<string, string>): Promise<string> {
    const code = sixDigitCode()
    await redis.multi()
      .del(key(purpose, email))
      .hset(key(purpose, email), { ...data, codeHash: hashCode(purpose, email, code), guesses: '0' })
      .expire(key(purpose, email), CODE_TTL_S)
      .exec()
    return code
  }

  /** Replaces the code of a pending flow, keeping its data. Null when there is none. */
  async function reissue (purpose: CodePurpose, email: string): Promise<{ code: string, data: Record<string, string> } | null> {
    const data = await redis.hgetall(key(purpose, email))
    if (!data.codeHash) return null
    const { codeHash: _hash, guesses: _guesses, ...rest } = data
    return { code: await issue(purpose, email, rest), data: rest }
  }

  async function consume<T extends Record<string, string>> (purpose: CodePurpose, email: string, code: string): Promise<CodeCheck<T>> {
    const k = key(purpose, email)
    // HINCRBY would create a fresh hash for an expired code; check and count in one step.
    const guesses = await redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end return redis.call('HINCRBY', KEYS[1], 'guesses', 1)",
      1, k) as number
    if (guesses < 0) return { ok: false, reason: 'expired' }
    // Past the limit nothing is compared any more, however many requests race;
    // the code itself is left for the 5th wrong guess or its TTL to remove, so
    // that a right guess already in flight can still complete.
    if (guesses > MAX_GUESSES) return { ok: false, reason: 'exhausted' }
    const stored = await redis.hgetall(k)
    if (!stored.codeHash) return { ok: false, reason: 'expired' }
    if (!sameHash(stored.codeHash, hashCode(purpose, email, code))) {
      if (guesses >= MAX_GUESSES) await redis.del(k)
      return { ok: false, reason: guesses >= MAX_GUESSES ? 'exhausted' : 'wrong' }
    }
    // Single use: only the request whose DEL removed the code goes on.
    if (await redis.del(k) !== 1) return { ok: false, reason: 'expired' }
    const { codeHash: _hash, guesses: _guesses, ...data } = stored
    return { ok: true, data: data as T }
  }

  async function discard (purpose: CodePurpose, email: string): Promise<void> {
    await redis.del(key(purpose, email), cooldownKey(purpose, email))
  }

  return { claimSendSlot, issue, reissue, consume, discard }
}
