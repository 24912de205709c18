import { ObjectId, MongoServerError, type Collection, type Db } from 'mongodb'
import type { Static } from '@sinclair/typebox'
import type { PublicUser as PublicUserSchema, SelfUser as SelfUserSchema } from '../schemas/auth.js'

export interface UserDoc {
  _id: ObjectId
  email: string
  username: string
  usernameLower: string
  displayName: string
  displayNameLower: string
  bio: string
  avatarId: string | null
  passwordHash: string
  createdAt: Date
  updatedAt: Date
  passwordChangedAt: Date
  lastSeenAt: Date | null
  /** Set when the account was erased (services/account-data.ts): it stays only as "Deleted user". */
  deletedAt?: Date
  /** A bot account (services/bots.ts): no password, signs in with API keys only. */
  bot?: { ownerId: string }
}

export type PublicUser = Static<typeof PublicUserSchema>
export type SelfUser = Static<typeof SelfUserSchema>

export const avatarUrl = (avatarId: string | null): string | null => avatarId ? `/api/media/${avatarId}` : null

export function toPublicUser (user: UserDoc): PublicUser {
  return {
    id: user._id.toHexString(),
    username: user.username,
    displayName: user.displayName,
    bio: user.bio,
    avatarUrl: avatarUrl(user.avatarId),
    lastSeenAt: user.lastSeenAt?.toISOString() ?? null,
    ...(user.bot ? { bot: true } : {})
  }
}

export function toSelfUser (user: UserDoc): SelfUser {
  return { ...toPublicUser(user), email: user.email, createdAt: user.createdAt.toISOString() }
}

export class DuplicateUserError extends Error {
  constructor (readonly field: 'email' | 'username') {
    super(`${field} already taken`)
  }
}

export const isDuplicateKey = (err: unknown): boolean => err instanceof MongoServerError && err.code === 11000

/**
 * Runs an upsert, once more if it lost a race: two concurrent upserts of one
 * key can both try to insert, and the loser gets a duplicate-key error (MongoDB
 * retries some of these itself, FerretDB does not). The retry finds the
 * document and updates it instead.
 */
export async function upsertRetrying<T> (upsert: () => Promise<T>): Promise<T> {
  try {
    return await upsert()
  } catch (err) {
    if (!isDuplicateKey(err)) throw err
    return upsert()
  }
}

/** Parses a 24-hex id; anything else is simply "no such id". */
export function parseObjectId (id: string): ObjectId | null {
  return /^[0-9a-f]{24}$/i.test(id) ? new ObjectId(id) : null
}

export type UserService = ReturnType<typeof createUserService>

export function createUserService (db: Db) {
  const users: Collection<UserDoc> = db.collection<UserDoc>('users')

  async function create (input: { email: string, username: string, passwordHash: string, displayName?: string, bot?: UserDoc['bot'], _id?: ObjectId }): Promise<UserDoc> {
    const now = new Date()
    const displayName = input.displayName ?? input.username
    const doc: UserDoc = {
      _id: input._id ?? new ObjectId(),
      email: input.email,
      username: input.username,
      usernameLower: input.username.toLowerCase(),
      displayName,
      displayNameLower: displayName.toLowerCase(),
      bio: '',
      avatarId: null,
      passwordHash: input.passwordHash,
      createdAt: now,
      updatedAt: now,
      passwordChangedAt: now,
      lastSeenAt: null,
      ...(input.bot ? { bot: input.bot } : {})
    }
    try {
      await users.insertOne(doc)
    } catch (err) {
      // Which index refused it is looked up rather than parsed from the error
      // text, which MongoDB and FerretDB word differently.
      if (isDuplicateKey(err)) throw new DuplicateUserError(await users.countDocuments({ email: doc.email }, { limit: 1 }) > 0 ? 'email' : 'username')
      throw err
    }
    return doc
  }

  const findById = (id: string): Promise<UserDoc | null> => {
    const _id = parseObjectId(id)
    return _id ? users.findOne({ _id }) : Promise.resolve(null)
  }
  const findByEmail = (email: string): Promise<UserDoc | null> => users.findOne({ email })
  const findByUsername = (username: string): Promise<UserDoc | null> => users.findOne({ usernameLower: username.toLowerCase() })
  const findByLogin = (login: string): Promise<UserDoc | null> => login.includes('@') ? findByEmail(login.toLowerCase()) : findByUsername(login)

  async function setPassword (id: ObjectId, passwordHash: string): Promise<void> {
    const now = new Date()
    await users.updateOne({ _id: id }, { $set: { passwordHash, passwordChangedAt: now, updatedAt: now } })
  }

  return { collection: users, create, findById, findByEmail, findByUsername, findByLogin, setPassword }
}
