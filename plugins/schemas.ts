import fp from 'fastify-plugin'
import { PublicUser } from '../schemas/auth.js'
import { Conversation, MediaInfo, Message } from '../schemas/chat.js'

// Schemas that many routes share: registered once, referenced by $ref, and
// listed once under components.schemas in the OpenAPI document.
export default fp(async (fastify) => {
  for (const schema of [PublicUser, MediaInfo, Conversation, Message]) fastify.addSchema(schema)
}, { name: 'schemas', dependencies: ['errors'] })
