import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import {
  AddMembersBody, ChangesPage, ChangesQuery, Conversation, ConversationListQuery, ConversationPage, ConversationPatch,
  CreateConversationBody, HistoryQuery, IdParams, MemberParams, Message, MessagePage, MuteBody, ReadBody, ReadState, SendBody,
  ThreadPage, ThreadParams, ThreadQuery
} from '../../../schemas/chat.js'
import { errorResponses, ref, bearerOrCookie } from '../../../schemas/common.js'
import { Type } from '@sinclair/typebox'
import webhooks from './webhooks.js'

const tags = ['conversations']

const conversations: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('preHandler', fastify.authenticate)
  const { conversations: service, messages } = fastify
  // Autoload loads only a folder's index when it has one.
  await fastify.register(webhooks)

  fastify.post('/', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Start a direct conversation or create a group',
      description: 'Direct: the same pair always gets the same conversation (201 the first time, 200 after, also under concurrent creates); BLOCKED (403) when that user blocked you. Group: you become its admin; GROUP_TOO_LARGE, USER_NOT_FOUND.',
      body: CreateConversationBody,
      response: { 200: ref(Conversation), 201: ref(Conversation), ...errorResponses(400, 401, 403, 404, 413, 415, 500) }
    }
  }, async (request, reply) => {
    const userId = request.user.id
    const body = request.body
    if (body.type === 'direct') {
      const { conversation, created } = await service.createDirect(userId, body.userId)
      return reply.code(created ? 201 : 200).send(await service.view(conversation, userId))
    }
    const conversation = await service.createGroup(userId, body.title, body.memberIds)
    return reply.code(201).send(await service.view(conversation, userId))
  })

  fastify.get('/', {
    config: { readOnly: true },
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Your conversations, latest activity first, with last-message preview and unread count',
      querystring: ConversationListQuery,
      response: { 200: ConversationPage, ...errorResponses(400, 401, 500) }
    }
  }, async (request, reply) => reply.sendKept(await service.list(request.user.id, request.query.limit ?? 20, request.query.cursor)))

  fastify.get('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'One conversation (404 unless you are a member)',
      params: IdParams,
      response: { 200: ref(Conversation), ...errorResponses(400, 401, 404, 500) }
    }
  }, async (request) => service.view(await service.getForMember(request.params.id, request.user.id), request.user.id))

  fastify.patch('/:id', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Rename a group (admins)',
      params: IdParams,
      body: ConversationPatch,
      response: { 200: ref(Conversation), ...errorResponses(400, 401, 403, 404, 413, 415, 500) }
    }
  }, async (request) => service.view(await service.rename(request.params.id, request.user.id, request.body.title), request.user.id))

  fastify.post('/:id/members', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Add members to a group (admins)',
      params: IdParams,
      body: AddMembersBody,
      response: { 200: ref(Conversation), ...errorResponses(400, 401, 403, 404, 413, 415, 500) }
    }
  }, async (request) => service.view(await service.addMembers(request.params.id, request.user.id, request.body.userIds), request.user.id))

  fastify.delete('/:id/members/:userId', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Remove a member (admins), or leave (your own id)',
      description: '204 when you left (the conversation no longer exists for you), else the updated conversation.',
      params: MemberParams,
      response: { 200: ref(Conversation), 204: Type.Null({ description: 'You left' }), ...errorResponses(400, 401, 403, 404, 500) }
    }
  }, async (request, reply) => {
    const updated = await service.removeMember(request.params.id, request.user.id, request.params.userId)
    if (!updated) return reply.code(204).send(null)
    return service.view(updated, request.user.id)
  })

  fastify.put('/:id/mute', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Mute notifications until a time (null unmutes)',
      params: IdParams,
      body: MuteBody,
      response: { 200: ref(Conversation), ...errorResponses(400, 401, 404, 413, 415, 500) }
    }
  }, async (request) => {
    const until = request.body.until === null ? null : new Date(request.body.until)
    return service.view(await service.mute(request.params.id, request.user.id, until), request.user.id)
  })

  fastify.post('/:id/messages', {
    config: { rateBucket: 'send' },
    schema: {
      tags: ['messages'],
      security: bearerOrCookie,
      summary: 'Send a message',
      description: '201 with the stored message and its seq. Resending the same clientMsgId returns the original (200) and never stores a second one; reusing it for different content is CLIENT_MSG_ID_REUSED (409). EMPTY_MESSAGE, MESSAGE_TOO_LONG, TOO_MANY_ATTACHMENTS, MEDIA_NOT_FOUND, BLOCKED.',
      params: IdParams,
      body: SendBody,
      response: { 200: ref(Message), 201: ref(Message), ...errorResponses(400, 401, 403, 404, 409, 413, 415, 500, 503) }
    }
  }, async (request, reply) => {
    const { message, created } = await messages.send(request.params.id, request.user.id, request.body)
    return reply.code(created ? 201 : 200).send(message)
  })

  fastify.get('/:id/messages', {
    config: { readOnly: true },
    schema: {
      tags: ['messages'],
      security: bearerOrCookie,
      summary: 'Message history by seq: the latest page, or before / after a seq',
      description: 'Ascending by seq. Deleted messages are tombstones (deleted: true, no text or attachments).',
      params: IdParams,
      querystring: HistoryQuery,
      response: { 200: MessagePage, ...errorResponses(400, 401, 404, 500) }
    }
  }, async (request, reply) => reply.sendKept(await messages.history(request.params.id, request.user.id, { ...request.query, limit: request.query.limit ?? 50 })))

  fastify.get('/:id/changes', {
    schema: {
      tags: ['messages'],
      security: bearerOrCookie,
      summary: 'Catch up: everything that changed after a change number',
      description: 'New messages, edits, deletions and reactions, each as the message\'s current state, oldest change first. Start with since=0 (or the changeSeq you last saw), apply each page keyed by seq, continue with `cursor` while hasMore.',
      params: IdParams,
      querystring: ChangesQuery,
      response: { 200: ChangesPage, ...errorResponses(400, 401, 404, 500) }
    }
  }, async (request) => messages.changes(request.params.id, request.user.id, request.query.since, request.query.limit ?? 100))

  fastify.post('/:id/read', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Mark read up to seq (never moves backwards)',
      params: IdParams,
      body: ReadBody,
      response: { 200: ReadState, ...errorResponses(400, 401, 404, 413, 415, 500) }
    }
  }, async (request) => service.markRead(request.params.id, request.user.id, request.body.seq))

  fastify.get('/:id/threads/:seq', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'A thread: its first message and a page of its replies (after a seq), with your unread count in it',
      description: 'Send with `replyTo` to reply. A reply to a reply joins the same thread. Replies are also ordinary messages of the conversation (history, catch-up, search).',
      params: ThreadParams,
      querystring: ThreadQuery,
      response: { 200: ThreadPage, ...errorResponses(400, 401, 404, 500) }
    }
  }, async (request) => messages.thread(request.params.id, request.user.id, request.params.seq, { after: request.query.after, limit: request.query.limit ?? 50 }))

  fastify.post('/:id/threads/:seq/read', {
    schema: {
      tags,
      security: bearerOrCookie,
      summary: 'Mark a thread read up to seq (never moves backwards)',
      params: ThreadParams,
      body: ReadBody,
      response: { 200: ReadState, ...errorResponses(400, 401, 404, 413, 415, 500) }
    }
  }, async (request) => messages.markThreadRead(request.params.id, request.user.id, request.params.seq, request.body.seq))
}

export default conversations
