import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto'

/** Keyed hash for what is stored but must never be readable: refresh tokens, one-time codes. */
export function keyedHash (secret: string, value: string): string {
  return createHmac('sha256', secret).update(value).digest('base64url')
}

/** Constant-time equality of two stored/derived hashes. */
export function sameHash (a: string | undefined | null, b: string): boolean {
  if (typeof a !== 'string') return false
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

export const randomToken = (bytes = 32): string => randomBytes(bytes).toString('base64url')

/** Six digits from a CSPRNG, leading zeros kept. */
export const sixDigitCode = (): string => String(randomInt(0, 1_000_000)).padStart(6, '0')

/** A stable, non-reversible handle for an email in Redis keys and job ids. */
export const emailKey = (secret: string, email: string): string => keyedHash(secret, `email:${email}`).slice(0, 32)
