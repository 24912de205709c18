import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { IdParams, ImageUpload, MediaInfo } from '../../../schemas/chat.js'
import { errorResponses, ref, bearerOrCookie, uploadRoute } from '../../../schemas/common.js'
import { MediaNotFound } from '../../../services/media.js'
import { readImageUpload } from '../../../services/uploads.js'

const tags = ['media']

const media: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)

  fastify.post('/', {
    config: { rateBucket: 'upload', ...uploadRoute(ImageUpload) },
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Upload an image to attach to a message (multipart/form-data, one file)',
      description: 'Returns the id to put in a message\'s `attachments`. Type by magic bytes (UNSUPPORTED_IMAGE, 415); size up to UPLOAD_MAX_BYTES (UPLOAD_TOO_LARGE, 413).',
      consumes: ['multipart/form-data'],
      response: { 201: ref(MediaInfo), ...errorResponses(400, 401, 403, 413, 415, 500) }
    }
  }, async (request, reply) => {
    const { data, contentType } = await readImageUpload(request)
    return reply.code(201).send(await fastify.media.put({ ownerId: request.user.id, kind: 'attachment', contentType, data }))
  })

  fastify.get('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Download an avatar or an attachment',
      description: 'Avatars are visible to every signed-in user; attachments to their uploader and the members of the conversation they were sent in. Anyone else gets 404 MEDIA_NOT_FOUND, exactly as for an id that does not exist. Errors are JSON.',
      params: IdParams,
      response: {
        200: {
          description: 'The image, with its stored content type',
          content: Object.fromEntries(['image/png', 'image/jpeg', 'image/webp', 'image/gif'].map((type) => [type, { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) }]))
        },
        ...errorResponses(400, 401, 404, 500)
      }
    }
  }, async (request, reply) => {
    const doc = await fastify.media.get(request.params.id)
    if (!doc) throw new MediaNotFound()
    if (doc.kind === 'attachment' && doc.ownerId !== request.user.id) {
      if (!doc.conversationId) throw new MediaNotFound()
      await fastify.conversations.getForMember(doc.conversationId, request.user.id).catch(() => { throw new MediaNotFound() })
    }
    return reply
      .type(doc.contentType)
      .header('content-length', doc.size)
      .header('cache-control', 'private, max-age=31536000, immutable')
      .header('content-security-policy', "default-src 'none'; sandbox")
      .header('content-disposition', 'inline')
      .send(Buffer.from(doc.data.buffer))
  })
}

export default media
