import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Readable } from 'node:stream'
import { Type } from '@sinclair/typebox'
import { DeleteAccountBody, SelfUser } from '../../../schemas/auth.js'
import { AccountExport, IdParams, ImageUpload, ProfilePatch, PublicUser, UserPage, UserSearchQuery } from '../../../schemas/chat.js'
import { errorResponses, ref, bearerOrCookie, uploadRoute } from '../../../schemas/common.js'
import { toSelfUser } from '../../../services/users.js'
import { readImageUpload } from '../../../services/uploads.js'
import { UserNotFound } from '../../../services/people.js'

const tags = ['users']
const Done = Type.Object({ status: Type.Literal('ok') })

const users: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)

  fastify.get('/me', {
    schema: { tags, security: bearerOrCookie, summary: 'Your profile', response: { 200: SelfUser, ...errorResponses(401, 500) } }
  }, async (request) => fastify.people.self(request.user.id))

  fastify.patch('/me', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Change your display name or bio',
      body: ProfilePatch,
      response: { 200: SelfUser, ...errorResponses(400, 401, 403, 413, 415, 500) }
    }
  }, async (request) => toSelfUser(await fastify.people.updateProfile(request.user.id, request.body)))

  fastify.put('/me/avatar', {
    config: { rateBucket: 'upload', ...uploadRoute(ImageUpload) },
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Upload your avatar (multipart/form-data, one image file)',
      description: 'PNG, JPEG, WebP or GIF, decided by the file\'s magic bytes, not by its declared type (UNSUPPORTED_IMAGE, 415). Larger than UPLOAD_MAX_BYTES: UPLOAD_TOO_LARGE (413).',
      consumes: ['multipart/form-data'],
      response: { 200: SelfUser, ...errorResponses(400, 401, 403, 413, 415, 500) }
    }
  }, async (request) => {
    const { data, contentType } = await readImageUpload(request)
    const stored = await fastify.media.put({ ownerId: request.user.id, kind: 'avatar', contentType, data })
    const { user, previous } = await fastify.people.setAvatar(request.user.id, stored.id)
    if (previous) await fastify.media.delete(previous)
    return toSelfUser(user)
  })

  fastify.delete('/me/avatar', {
    schema: { tags, security: bearerOrCookie, summary: 'Remove your avatar', response: { 200: SelfUser, ...errorResponses(401, 403, 500) } }
  }, async (request) => {
    const { user, previous } = await fastify.people.setAvatar(request.user.id, null)
    if (previous) await fastify.media.delete(previous)
    return toSelfUser(user)
  })

  fastify.get('/me/export', {
    preHandler: fastify.humansOnly,
    // Streams everything the user has: on the upload budget (30 a minute by default), not the general one.
    config: { rateBucket: 'upload' },
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Download your data (profile, sessions, blocks, media, conversations, every message you sent) as JSON',
      // Documented as the JSON it is; sent as a stream (one document, however many messages).
      response: { 200: Type.Unsafe<Readable>(AccountExport), ...errorResponses(401, 500) }
    }
  }, async (request, reply) => {
    const user = await fastify.users.findById(request.user.id)
    if (!user) throw new UserNotFound()
    reply.type('application/json; charset=utf-8').header('content-disposition', 'attachment; filename="parley-export.json"')
    return reply.send(fastify.accountData.exportData(user))
  })

  fastify.delete('/me', {
    preHandler: fastify.humansOnly,
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Erase your account (confirm with your password)',
      description: 'Irreversible. Every session ends and sockets close (4001); email, username, display name, bio, avatar and password are erased; your uploads, push subscriptions and bots are deleted; your messages stay in their conversations, shown as from "Deleted user". The email and username can be registered again. Wrong password: 403 WRONG_PASSWORD (counts towards the sign-in lockout).',
      body: DeleteAccountBody,
      response: { 200: Done, ...errorResponses(400, 401, 403, 415, 500) }
    }
  }, async (request, reply) => {
    const user = await fastify.accounts.confirmPassword(request.user.id, request.body.password)
    await fastify.accountData.erase(user)
    reply.clearCookie(fastify.cookieNames.access, { path: '/' })
    reply.clearCookie(fastify.cookieNames.refresh, { path: '/api/auth' })
    return { status: 'ok' as const }
  })

  fastify.get('/', {
    config: { rateBucket: 'search' },
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Search the user directory by username or display name prefix',
      querystring: UserSearchQuery,
      response: { 200: UserPage, ...errorResponses(400, 401, 500) }
    }
  }, async (request) => fastify.people.search(request.query.q, request.query.limit ?? 20, request.query.cursor))

  fastify.get('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'A user\'s public profile, with last seen',
      params: IdParams,
      response: { 200: ref(PublicUser), ...errorResponses(400, 401, 404, 500) }
    }
  }, async (request) => fastify.people.profile(request.params.id))

  fastify.put('/:id/block', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Block a user: they can no longer start a direct conversation with you or message you in one',
      params: IdParams,
      response: { 200: Done, ...errorResponses(400, 401, 403, 404, 500) }
    }
  }, async (request) => {
    await fastify.people.block(request.user.id, request.params.id)
    return { status: 'ok' as const }
  })

  fastify.delete('/:id/block', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Unblock a user',
      params: IdParams,
      response: { 200: Done, ...errorResponses(400, 401, 403, 500) }
    }
  }, async (request) => {
    await fastify.people.unblock(request.user.id, request.params.id)
    return { status: 'ok' as const }
  })
}

export default users
