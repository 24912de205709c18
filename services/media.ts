// Uploaded images (avatars, message attachments). Stored as one MongoDB
// document each — uploads are capped far below the 16 MiB document limit —
// behind a small interface, so another store (disk, S3) can take its place.
// The type is decided by the file's magic bytes, never by what the client says.
import { Binary, ObjectId, type Collection, type Db } from 'mongodb'
import { fileTypeFromBuffer } from 'file-type'
import createError from '@fastify/error'
import { findByIds } from './collections.js'
import { parseObjectId } from './users.js'
import type { Static } from '@sinclair/typebox'
import type { MediaInfo as MediaInfoSchema } from '../schemas/chat.js'

export const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/gif'])
export const UnsupportedImage = createError('UNSUPPORTED_IMAGE', 'Only PNG, JPEG, WebP and GIF images are accepted', 415)
export const MediaNotFound = createError('MEDIA_NOT_FOUND', 'No such media', 404)

export type MediaKind = 'avatar' | 'attachment'

export interface MediaDoc {
  _id: ObjectId
  ownerId: string
  kind: MediaKind
  contentType: string
  size: number
  data: Binary
  /** For attachments: the conversation of the message it was sent with. */
  conversationId: string | null
  createdAt: Date
}

export type MediaInfo = Static<typeof MediaInfoSchema>

export interface MediaStore {
  put: (input: { ownerId: string, kind: MediaKind, contentType: string, data: Buffer }) => Promise<MediaInfo>
  get: (id: string) => Promise<MediaDoc | null>
  delete: (id: string) => Promise<void>
}

export const mediaUrl = (id: string): string => `/api/media/${id}`

/** The detected image type, or an UNSUPPORTED_IMAGE error. */
export async function detectImageType (data: Buffer): Promise<string> {
  const detected = await fileTypeFromBuffer(data)
  if (!detected || !IMAGE_TYPES.has(detected.mime)) throw new UnsupportedImage()
  return detected.mime
}

export type MediaService = ReturnType<typeof createMediaService>

export function createMediaService (db: Db) {
  const media: Collection<MediaDoc> = db.collection<MediaDoc>('media')

  const store: MediaStore = {
    async put ({ ownerId, kind, contentType, data }) {
      const doc: MediaDoc = { _id: new ObjectId(), ownerId, kind, contentType, size: data.length, data: new Binary(data), conversationId: null, createdAt: new Date() }
      await media.insertOne(doc)
      const id = doc._id.toHexString()
      return { id, url: mediaUrl(id), contentType, size: data.length }
    },
    async get (id) {
      const _id = parseObjectId(id)
      return _id ? media.findOne({ _id }) : null
    },
    async delete (id) {
      const _id = parseObjectId(id)
      if (_id) await media.deleteOne({ _id })
    }
  }

  /** Attachments named in a message must be the sender's own, unused uploads. */
  async function claimAttachments (ownerId: string, ids: string[], conversationId: string): Promise<MediaInfo[]> {
    const objectIds = ids.map(parseObjectId)
    if (objectIds.some((id) => id === null)) throw new MediaNotFound()
    const docs = await findByIds(media, objectIds as ObjectId[], { data: 0 })
    const usable = docs.filter((d) => d.ownerId === ownerId && d.kind === 'attachment' && (d.conversationId === null || d.conversationId === conversationId))
    if (usable.length !== new Set(ids).size) throw new MediaNotFound()
    await Promise.all(usable.map((d) => media.updateOne({ _id: d._id }, { $set: { conversationId } })))
    const byId = new Map(usable.map((d) => [d._id.toHexString(), d]))
    return ids.map((id) => {
      const d = byId.get(id)!
      return { id, url: mediaUrl(id), contentType: d.contentType, size: d.size }
    })
  }

  return { ...store, claimAttachments }
}
