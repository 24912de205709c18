// A user's own data: the export they may download, and the erasure of their
// account.
//
// Erasure (the documented choice): the account is anonymised in place rather
// than removed, because other people's conversations refer to it. Email,
// username, display name, bio, avatar, password and last seen are replaced,
// every session ends (sockets close with 4001), every medium they uploaded
// (avatar and attachments) is deleted, and their blocks go. Their messages stay
// in the conversations they were part of, shown as from "Deleted user": they
// belong to the other people's history as much as to theirs. The email and
// username are free to be registered again.
import { Readable } from 'node:stream'
import type { Collection, Db } from 'mongodb'
import type { ConversationDoc } from './conversations.js'
import type { MediaDoc } from './media.js'
import type { MessageDoc, MessageView } from './messages.js'
import type { ReadModel } from './read-model.js'
import type { SessionService } from './sessions.js'
import { toSelfUser, type UserDoc, type UserService } from './users.js'

export const DELETED_DISPLAY_NAME = 'Deleted user'

export type AccountDataService = ReturnType<typeof createAccountDataService>

export function createAccountDataService (deps: {
  db: Db
  users: UserService
  sessions: SessionService
  readModel: ReadModel
  toMessageView: (doc: MessageDoc) => MessageView
  /** What else goes with an erased account: its push devices, its bots. */
  alsoErase?: (user: UserDoc) => Promise<void>
}) {
  const { db, users, sessions, readModel, toMessageView } = deps
  const conversations: Collection<ConversationDoc> = db.collection('conversations')
  const messages: Collection<MessageDoc> = db.collection('messages')
  const media: Collection<MediaDoc> = db.collection('media')
  const blocks = db.collection<{ _id: string, blockerId: string, blockedId: string, createdAt: Date }>('blocks')

  /**
   * Everything Parley holds about the user, as one JSON document, streamed
   * (their messages can be many): profile, sessions, blocks, media
   * (metadata and URLs), conversations and every message they sent.
   */
  function exportData (user: UserDoc): Readable {
    const userId = user._id.toHexString()
    async function * parts (): AsyncGenerator<string> {
      yield `{"exportedAt":${JSON.stringify(new Date().toISOString())},"profile":${JSON.stringify(toSelfUser(user))}`
      yield `,"sessions":${JSON.stringify(await sessions.list(userId))}`
      const blocked = await blocks.find({ blockerId: userId }, { projection: { blockedId: 1, createdAt: 1 } }).toArray()
      yield `,"blocked":${JSON.stringify(blocked.map((b) => ({ userId: b.blockedId, since: b.createdAt })))}`
      const uploads = await media.find({ ownerId: userId }, { projection: { data: 0 } }).sort({ createdAt: 1 }).toArray()
      yield `,"media":${JSON.stringify(uploads.map((m) => ({ id: m._id.toHexString(), kind: m.kind, contentType: m.contentType, size: m.size, createdAt: m.createdAt, url: `/api/media/${m._id.toHexString()}` })))}`
      const theirs = await conversations.find({ memberIds: userId }, { projection: { type: 1, title: 1, memberIds: 1, createdAt: 1 } }).toArray()
      yield `,"conversations":${JSON.stringify(theirs.map((c) => ({ id: c._id.toHexString(), type: c.type, title: c.title, memberIds: c.memberIds, createdAt: c.createdAt })))}`
      yield ',"messages":['
      let first = true
      for await (const doc of messages.find({ senderId: userId }).sort({ senderId: 1, createdAt: 1, _id: 1 })) {
        yield `${first ? '' : ','}${JSON.stringify(toMessageView(doc))}`
        first = false
      }
      yield ']}'
    }
    return Readable.from(parts())
  }

  /** Anonymises the account, ends its sessions and deletes its media (see above). */
  async function erase (user: UserDoc): Promise<void> {
    const userId = user._id.toHexString()
    const now = new Date()
    const placeholder = `deleted_${userId}`
    const erased = await users.collection.findOneAndUpdate({ _id: user._id }, {
      $set: {
        email: `${placeholder}@deleted.invalid`,
        username: placeholder,
        usernameLower: placeholder,
        displayName: DELETED_DISPLAY_NAME,
        displayNameLower: DELETED_DISPLAY_NAME.toLowerCase(),
        bio: '',
        avatarId: null,
        // Not a hash any password verifies against; sign-in also refuses erased accounts outright.
        passwordHash: '!',
        lastSeenAt: null,
        updatedAt: now,
        passwordChangedAt: now,
        deletedAt: now
      }
    }, { returnDocument: 'after' })
    await sessions.revokeAll(userId)
    await Promise.all([
      media.deleteMany({ ownerId: userId }),
      blocks.deleteMany({ $or: [{ blockerId: userId }, { blockedId: userId }] })
    ])
    if (erased) await readModel.putProfiles([erased])
    await deps.alsoErase?.(user)
  }

  return { exportData, erase }
}
