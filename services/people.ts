// Profiles, the user directory and blocks.
import type { Collection, Db, Filter } from 'mongodb'
import createError from '@fastify/error'
import type { ReadModel } from './read-model.js'
import { parseObjectId, toPublicUser, upsertRetrying, type PublicUser, type SelfUser, type UserDoc, type UserService } from './users.js'

export const UserNotFound = createError('USER_NOT_FOUND', 'No such user', 404)
export const CannotBlockSelf = createError('CANNOT_BLOCK_SELF', 'You cannot block yourself', 400)
export const InvalidCursor = createError('INVALID_CURSOR', 'The cursor is not one this API gave out', 400)

interface BlockDoc {
  _id: string // `${blockerId}:${blockedId}`
  blockerId: string
  blockedId: string
  createdAt: Date
}

export const encodeCursor = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
export function decodeCursor<T> (cursor: string, check: (value: unknown) => value is T): T {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (check(value)) return value
  } catch {}
  throw new InvalidCursor()
}

export type PeopleService = ReturnType<typeof createPeopleService>

export function createPeopleService (db: Db, users: UserService, readModel: ReadModel) {
  const blocks: Collection<BlockDoc> = db.collection<BlockDoc>('blocks')

  async function updateProfile (userId: string, patch: { displayName?: string, bio?: string }): Promise<UserDoc> {
    const _id = parseObjectId(userId)
    if (!_id) throw new UserNotFound()
    const set: Partial<UserDoc> = { updatedAt: new Date() }
    if (patch.displayName !== undefined) {
      set.displayName = patch.displayName
      set.displayNameLower = patch.displayName.toLowerCase()
    }
    if (patch.bio !== undefined) set.bio = patch.bio
    const updated = await users.collection.findOneAndUpdate({ _id }, { $set: set }, { returnDocument: 'after' })
    if (!updated) throw new UserNotFound()
    await readModel.putProfiles([updated])
    return updated
  }

  async function setAvatar (userId: string, avatarId: string | null): Promise<{ user: UserDoc, previous: string | null }> {
    const _id = parseObjectId(userId)
    if (!_id) throw new UserNotFound()
    const updatedAt = new Date()
    const before = await users.collection.findOneAndUpdate({ _id }, { $set: { avatarId, updatedAt } }, { returnDocument: 'before' })
    if (!before) throw new UserNotFound()
    const user = { ...before, avatarId, updatedAt }
    await readModel.putProfiles([user])
    return { user, previous: before.avatarId }
  }

  const isCursor = (v: unknown): v is { u: string } => typeof v === 'object' && v !== null && typeof (v as { u: unknown }).u === 'string'

  /**
   * Prefix search over usernames and display names. A range on the lowercased
   * fields, not a regular expression: user input never becomes a pattern.
   */
  async function search (query: string, limit: number, cursor?: string): Promise<{ users: PublicUser[], nextCursor: string | null }> {
    const q = query.toLowerCase()
    const prefix = (field: string): Filter<UserDoc> => ({ [field]: { $gte: q, $lt: `${q}\uffff` } })
    // Erased accounts are not in the directory.
    const filter: Filter<UserDoc> = { $or: [prefix('usernameLower'), prefix('displayNameLower')], deletedAt: { $exists: false } }
    const after = cursor ? decodeCursor(cursor, isCursor).u : undefined
    const docs = await users.collection
      .find(after === undefined ? filter : { $and: [filter, { usernameLower: { $gt: after } }] }, { projection: { passwordHash: 0, email: 0 } })
      .sort({ usernameLower: 1 })
      .limit(limit + 1)
      .toArray()
    const page = docs.slice(0, limit)
    return { users: page.map(toPublicUser), nextCursor: docs.length > limit ? encodeCursor({ u: page.at(-1)!.usernameLower }) : null }
  }

  async function profile (userId: string): Promise<PublicUser> {
    const user = (await readModel.profiles([userId])).get(userId)
    if (!user) throw new UserNotFound()
    return user
  }

  /** The signed-in user's own profile. */
  async function self (userId: string): Promise<SelfUser> {
    const user = await readModel.self(userId)
    if (!user) throw new UserNotFound()
    return user
  }

  async function block (blockerId: string, blockedId: string): Promise<void> {
    if (blockerId === blockedId) throw new CannotBlockSelf()
    if (!await users.findById(blockedId)) throw new UserNotFound()
    await upsertRetrying(() => blocks.updateOne({ _id: `${blockerId}:${blockedId}` }, { $setOnInsert: { blockerId, blockedId, createdAt: new Date() } }, { upsert: true }))
    await readModel.putBlock(blockerId, blockedId, true)
  }

  async function unblock (blockerId: string, blockedId: string): Promise<void> {
    await blocks.deleteOne({ _id: `${blockerId}:${blockedId}` })
    await readModel.putBlock(blockerId, blockedId, false)
  }

  /** Whether `blockerId` has blocked `blockedId`. */
  const hasBlocked = (blockerId: string, blockedId: string): Promise<boolean> => readModel.hasBlocked(blockerId, blockedId)

  /** Public profiles by id (unknown ids left out). */
  const summaries = (userIds: string[]): Promise<Map<string, PublicUser>> => readModel.profiles(userIds)

  return { updateProfile, setAvatar, search, profile, self, block, unblock, hasBlocked, summaries }
}
