import argon2 from 'argon2'
import { dictionary } from '@zxcvbn-ts/language-common'

// OWASP's argon2id parameters: 19 MiB, 2 iterations, 1 lane. argon2 hashes on
// libuv's thread pool, so the event loop stays free while it works.
const options = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const

const common = new Set((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()))

export const isCommonPassword = (password: string): boolean => common.has(password.toLowerCase())

export const hashPassword = (password: string): Promise<string> => argon2.hash(password, options)

export async function verifyPassword (hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, password)
  } catch {
    return false
  }
}

// Verifying against this when the user does not exist makes "no such user" take
// as long as "wrong password".
let dummyHash: Promise<string> | undefined
export async function burnVerification (password: string): Promise<void> {
  dummyHash ??= hashPassword('parley-timing-equaliser')
  await verifyPassword(await dummyHash, password)
}

/** Rehash on sign-in when the stored hash used weaker parameters. */
export const needsRehash = (hash: string): boolean => argon2.needsRehash(hash, options)
