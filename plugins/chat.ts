import fp from 'fastify-plugin'
import { createAccountDataService, type AccountDataService } from '../services/account-data.js'
import { createBotService, type BotService } from '../services/bots.js'
import { createConversationService, type ConversationDoc, type ConversationService } from '../services/conversations.js'
import { createMediaService, type MediaService } from '../services/media.js'
import { createMessageService, type MessageService } from '../services/messages.js'
import { createPeopleService, type PeopleService } from '../services/people.js'
import { createReadModel, type ReadModel } from '../services/read-model.js'
import { lastMessageOf, toMessageView } from '../services/messages.js'
import { createConversationLock } from '../services/conversation-lock.js'
import { createConversationActivity } from '../services/conversation-activity.js'
import { ObjectId } from 'mongodb'
import { Gauge } from 'prom-client'

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
    lastMessageOf,
    freezeDecoded: fastify.config.NODE_ENV === 'test',
    keptPagesBytes: fastify.config.KEPT_PAGES_MB * 1024 * 1024,
    onLookups: (structure, hits, misses) => {
      if (hits > 0) fastify.metrics.readModelLookups.inc({ structure, result: 'hit' }, hits)
      if (misses > 0) fastify.metrics.readModelLookups.inc({ structure, result: 'miss' }, misses)
    }
  })
  const people = createPeopleService(db, fastify.users, readModel)
  const media = createMediaService(db)
  const withConversationLock = createConversationLock(fastify.redis, (seconds) => fastify.metrics.lockWait.observe(seconds))
  const activity = createConversationActivity({
    conversations: db.collection<ConversationDoc>('conversations'),
    delayMs: fastify.config.CONVERSATION_WRITE_DELAY_MS,
    onError: (err) => fastify.log.warn({ err }, 'conversation activity not written yet; retrying')
  })
  fastify.metrics.registry.registerMetric(new Gauge({
    name: 'parley_conversation_writes_waiting',
    help: 'Conversations whose new activity (counters, last message) is not yet written to the database (services/conversation-activity.ts)',
    registers: [],
    collect () { this.set(activity.waiting) }
  }))
  // Runs before the database closes (hooks run in reverse order of registration).
  fastify.addHook('onClose', async () => { await activity.flushAll() })
  const conversations = createConversationService(db, people, readModel, fastify.publish, { groupMaxMembers: GROUP_MAX_MEMBERS }, withConversationLock)
  const messages = createMessageService({
    db,
    conversations,
    withConversationLock,
    activity,
    readModel,
    media,
    publish: fastify.publish,
    limits: { maxLength: MESSAGE_MAX_LENGTH, maxAttachments: MESSAGE_MAX_ATTACHMENTS },
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
