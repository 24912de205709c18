import fp from 'fastify-plugin'
import type { ResolvedConfig } from '../schemas/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: ResolvedConfig
  }
}

export interface ConfigPluginOptions {
  config: ResolvedConfig
}

// The config was validated by loadConfig() before Fastify was built (the server
// options depend on it); this plugin only makes it available to every plugin.
export default fp<ConfigPluginOptions>(async (fastify, opts) => {
  fastify.decorate('config', opts.config)
}, { name: 'config', fastify: '5.x' })
