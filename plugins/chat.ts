import fp from 'fastify-plugin'
import { createConversationService, type ConversationService } from '../services/conversations.js'
import { createMediaService, type MediaService } from '../services/media.js'
import { createMessageService, type MessageService } from '../services/messages.js'
import { createPeopleService, type PeopleService } from '../services/people.js'

declare module 'fastify' {
  interface FastifyInstance {
    people: PeopleService
    media: MediaService
    conversations: ConversationService
    messages: MessageService
  }
}

export default fp(async (fastify) => {
  const { db } = fastify.mongo
  const { GROUP_MAX_MEMBERS, MESSAGE_MAX_LENGTH, MESSAGE_MAX_ATTACHMENTS } = fastify.config
  const people = createPeopleService(db, fastify.users)
  const media = createMediaService(db)
  const conversations = createConversationService(db, people, fastify.publish, { groupMaxMembers: GROUP_MAX_MEMBERS })
  const messages = createMessageService({
    db,
    redis: fastify.redis,
    conversations,
    people,
    media,
    publish: fastify.publish,
    limits: { maxLength: MESSAGE_MAX_LENGTH, maxAttachments: MESSAGE_MAX_ATTACHMENTS }
  })
  fastify.decorate('people', people)
  fastify.decorate('media', media)
  fastify.decorate('conversations', conversations)
  fastify.decorate('messages', messages)
}, { name: 'chat', dependencies: ['config', 'db', 'redis', 'accounts', 'events'] })
