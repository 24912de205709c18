import fp from 'fastify-plugin'
import multipart from '@fastify/multipart'

export default fp(async (fastify) => {
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
