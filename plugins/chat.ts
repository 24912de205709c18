import fp from 'fastify-plugin'
import { createAccountDataService, type AccountDataService } from '../services/account-data.js'
import { createBotService, type BotService } from '../services/bots.js'
import { createConversationService, type ConversationService } from '../services/conversations.js'
import { createMediaService, type MediaService } from '../services/media.js'
import { createMessageService, type MessageService } from '../services/messages.js'
import { createPeopleService, type PeopleService } from '../services/people.js'
import { createReadModel, type ReadModel } from '../services/read-model.js'
import { toMessageView } from '../services/messages.js'
import { ObjectId } from 'mongodb'

declare module 'fastify' {
  interface FastifyInstance {
    people: PeopleService
    media: MediaService
    conversations: ConversationService
    messages: MessageService
    /** Redis copies of what clients read all the time, rebuilt from MongoDB on a miss. */
    readModel: ReadModel
    /** A user's data export and the erasure of their account. */
    accountData: AccountDataService
    /** Bot accounts and their API keys. */
    bots: BotService
  }
}

export default fp(async (fastify) => {
  const { db } = fastify.mongo
  const { GROUP_MAX_MEMBERS, MESSAGE_MAX_LENGTH, MESSAGE_MAX_ATTACHMENTS } = fastify.config
  const readModel = createReadModel({
    redis: fastify.redis,
    db,
    ObjectId,
    toMessageView,
    onLookups: (structure, hits, misses) => {
      if (hits > 0) fastify.metrics.readModelLookups.inc({ structure, result: 'hit' }, hits)
      if (misses > 0) fastify.metrics.readModelLookups.inc({ structure, result: 'miss' }, misses)
    }
  })
  const people = createPeopleService(db, fastify.users, readModel)
  const media = createMediaService(db)
  const conversations = createConversationService(db, people, readModel, fastify.publish, { groupMaxMembers: GROUP_MAX_MEMBERS })
  const messages = createMessageService({
    db,
    redis: fastify.redis,
    conversations,
    readModel,
    media,
    publish: fastify.publish,
    limits: { maxLength: MESSAGE_MAX_LENGTH, maxAttachments: MESSAGE_MAX_ATTACHMENTS },
    onLockWait: (seconds) => fastify.metrics.lockWait.observe(seconds),
    onStored: fastify.deliverStored
  })
  fastify.decorate('readModel', readModel)
  fastify.decorate('people', people)
  fastify.decorate('media', media)
  fastify.decorate('conversations', conversations)
  fastify.decorate('messages', messages)
  const accountData = createAccountDataService({
    db,
    users: fastify.users,
    sessions: fastify.sessions,
    readModel,
    toMessageView,
    alsoErase: async (user) => {
      await fastify.push.removeAll(user._id.toHexString())
      if (!user.bot) await bots.removeOwnedBy(user._id.toHexString())
    }
  })
  const bots = createBotService({ db, redis: fastify.redis, users: fastify.users, erase: accountData.erase })
  fastify.decorate('accountData', accountData)
  fastify.decorate('bots', bots)
}, { name: 'chat', dependencies: ['config', 'db', 'redis', 'accounts', 'events', 'metrics', 'deliveries'] })
