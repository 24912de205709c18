import fp from 'fastify-plugin'
import multipart from '@fastify/multipart'
import createError from '@fastify/error'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route takes multipart/form-data (uploads); every other route refuses it (415). */
    multipart?: boolean
  }
}

const NotAccepted = createError('UNSUPPORTED_MEDIA_TYPE', 'This route takes JSON, not multipart/form-data', 415)

export default fp(async (fastify) => {
  // The multipart parser is registered for every route; only uploads may use it.
  fastify.addHook('onRequest', async (request) => {
    const type = request.headers['content-type']
    if (type !== undefined && /^\s*multipart\//i.test(type) && request.routeOptions.config.multipart !== true) throw new NotAccepted()
  })

  await fastify.register(multipart, {
    limits: {
      fileSize: fastify.config.UPLOAD_MAX_BYTES,
      files: 1,
      fields: 10,
      fieldSize: 1024,
      parts: 12,
      headerPairs: 100
    },
    throwFileSizeLimit: true
  })
}, { name: 'multipart', dependencies: ['config'] })
