import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { buildAsyncApi } from '../../services/asyncapi.js'
import { errorResponses } from '../../schemas/common.js'

const docs: FastifyPluginAsyncTypebox = async (fastify) => {
  const document = buildAsyncApi('0.1.0')
  fastify.get('/asyncapi.json', {
    schema: {
      tags: ['realtime'],
      summary: 'AsyncAPI 3 document of the WebSocket protocol (/ws)',
      response: { 200: Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true, description: 'AsyncAPI 3.0.0' }), ...errorResponses(500) }
    }
  }, async () => document)
}

export default docs
