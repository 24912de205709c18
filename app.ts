import { randomUUID } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import autoload from '@fastify/autoload'
import { AjvCompiler, type ValidatorFactory } from '@fastify/ajv-compiler'
import fp from 'fastify-plugin'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { frameworkErrorReply } from './plugins/errors.js'
import { loadConfig, type ConfigInput, type ResolvedConfig } from './schemas/config.js'

const here = dirname(fileURLToPath(import.meta.url))

// Running from the TypeScript sources (tests, `npm run dev`): the plugin and
// route folders hold .ts files, which autoload must be told to load.
if (import.meta.url.endsWith('.ts')) process.env.FASTIFY_AUTOLOAD_TYPESCRIPT ??= '1'

export interface AppOptions {
  config: ResolvedConfig
}

// Fields that must never reach a log line.
const redactPaths = [
  'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
  '*.password', '*.newPassword', '*.currentPassword', '*.token', '*.accessToken', '*.refreshToken', '*.ticket', 'body.code', 'query.ticket'
]

export function serverOptions (config: ResolvedConfig): FastifyServerOptions {
  return {
    logger: {
      level: config.LOG_LEVEL,
      redact: { paths: redactPaths, censor: '[redacted]' }
    },
    bodyLimit: config.BODY_LIMIT,
    trustProxy: config.TRUST_PROXY,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Path parameters are bounded by their schemas (400 VALIDATION_ERROR), not
    // by the router: Node's header limit (16 KiB) bounds the whole URL.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 16 * 1024 },
    frameworkErrors: frameworkErrorReply,
    ajv: {
      customOptions: {
        // Unknown properties are errors (schemas set additionalProperties: false).
        removeAdditional: false,
        useDefaults: true,
        allErrors: false
      }
    },
    schemaController: { compilersFactory: { buildValidator: buildValidator as unknown as ValidatorFactory } }
  }
}

const validatorPool = AjvCompiler()
interface RouteDefinition { schema: object, httpPart?: string }

// Query strings, params and headers arrive as text and are coerced to their
// schema types; JSON bodies are not: "1" is not a number there. (The compiler
// is called with the route definition, which its published types do not say.)
function buildValidator (externalSchemas: Record<string, object>, ajvOptions: { customOptions?: Record<string, unknown> }) {
  const compiler = (coerceTypes: false | 'array') => validatorPool(externalSchemas, { ...ajvOptions, customOptions: { ...ajvOptions.customOptions, coerceTypes } }) as unknown as (route: RouteDefinition) => unknown
  const strict = compiler(false)
  const coercing = compiler('array')
  return (route: RouteDefinition) => route.httpPart === 'body' ? strict(route) : coercing(route)
}

/** Builds the whole app: every plugin, then every route. */
const app: FastifyPluginAsync<AppOptions> = async (fastify, opts) => {
  // Only JSON and multipart bodies are accepted; a text/plain POST is 415.
  fastify.removeContentTypeParser(['text/plain'])

  fastify.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  await fastify.register(autoload, {
    dir: join(here, 'plugins'),
    options: opts,
    forceESM: true
  })
  await fastify.register(autoload, {
    dir: join(here, 'routes'),
    options: opts,
    forceESM: true
  })
}

// Not encapsulated, so the server and tests see the decorators (config, mongo, redis…).
const parley = fp(app, { name: 'parley', fastify: '5.x' })
export default parley

/**
 * The one way to get a running app instance: the server, the tests and the
 * benchmarks all come through here with the same options.
 */
export async function buildApp (overrides: ConfigInput = {}): Promise<FastifyInstance> {
  const config = loadConfig(overrides)
  const fastify = Fastify(serverOptions(config)).withTypeProvider<TypeBoxTypeProvider>()
  try {
    await fastify.register(parley, { config })
    await fastify.ready()
  } catch (err) {
    // Whatever did start (connections, workers) must not keep the process alive.
    await fastify.close().catch(() => {})
    throw err
  }
  return fastify
}
