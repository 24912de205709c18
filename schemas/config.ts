import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { getHeapStatistics } from 'node:v8'
import { Type, type Static } from '@sinclair/typebox'
import envSchema from 'env-schema'
import { MAX_INT } from './common.js'

// Every setting the app reads. The TypeScript type below is derived from this
// schema, so the two cannot drift apart.
export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development' }),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535 }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
  TRUST_PROXY: Type.Boolean({ default: false, description: 'Trust X-Forwarded-* headers (behind a load balancer)' }),

  MONGODB_URI: Type.String({ pattern: '^mongodb(\\+srv)?://', description: 'MongoDB connection string' }),
  MONGODB_DB: Type.String({ default: 'parley', pattern: '^[A-Za-z0-9_-]{1,63}$' }),
  REDIS_URL: Type.String({ pattern: '^rediss?://', description: 'Redis connection string' }),
  REDIS_CLUSTER_NODES: Type.String({
    default: '',
    pattern: '^$|^[^,\\s]+(,[^,\\s]+)*$',
    description: 'Comma-separated seed nodes (host:port) of a Redis Cluster; when set Parley runs on the cluster, and REDIS_URL (defaulting to the first seed) supplies only credentials and TLS'
  }),
  REDIS_PREFIX: Type.String({ default: 'parley', pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'Prefix for every Redis key, queue and channel' }),

  SMTP_URL: Type.Optional(Type.String({ pattern: '^smtps?://' })),
  MAIL_FROM: Type.String({ default: 'Parley <no-reply@parley.local>', minLength: 3 }),
  MAIL_CAPTURE_DIR: Type.String({ default: '.data/mail', description: 'Where mail is written as .eml files when SMTP_URL is unset (development only)' }),
  EMAIL_WORKER: Type.Boolean({ default: true, description: 'Run the email worker inside the API process' }),
  EMAIL_ATTEMPTS: Type.Integer({ default: 5, minimum: 3, maximum: 20 }),
  EMAIL_BACKOFF_MS: Type.Integer({ default: 2000, minimum: 10, maximum: 600000 }),

  JWT_SECRET: Type.Optional(Type.String({ minLength: 32, description: 'HS256 key for access tokens (at least 256 bits)' })),
  HASH_SECRET: Type.Optional(Type.String({ minLength: 32, description: 'HMAC key for stored refresh-token and one-time-code hashes' })),
  ACCESS_TOKEN_TTL_S: Type.Integer({ default: 900, minimum: 30, maximum: 3600 }),
  REFRESH_TOKEN_TTL_S: Type.Integer({ default: 7 * 24 * 3600, minimum: 60, maximum: 90 * 24 * 3600 }),
  SESSION_MAX_AGE_S: Type.Integer({ default: 30 * 24 * 3600, minimum: 60, maximum: 365 * 24 * 3600, description: 'Absolute session lifetime, however often it is refreshed' }),
  JWT_ISSUER: Type.String({ default: 'parley', minLength: 1 }),
  JWT_AUDIENCE: Type.String({ default: 'parley-api', minLength: 1 }),
  COOKIE_SECURE: Type.Optional(Type.Boolean({ description: 'Secure, __Host- cookies; default true in production' })),

  CORS_ORIGINS: Type.String({ default: '', description: 'Comma-separated list of allowed browser origins' }),
  BODY_LIMIT: Type.Integer({ default: 1048576, minimum: 1024, maximum: 104857600 }),
  UPLOAD_MAX_BYTES: Type.Integer({ default: 5242880, minimum: 1024, maximum: 104857600 }),
  RATE_LIMIT_MAX: Type.Integer({ default: 300, minimum: 1, maximum: 1e9, description: 'Requests per signed-in user per minute, over every route without a budget of its own' }),
  SEND_RATE_LIMIT_MAX: Type.Integer({ default: 300, minimum: 1, maximum: 1e9, description: 'Messages a user may send per minute (HTTP and WebSocket together)' }),
  UPLOAD_RATE_LIMIT_MAX: Type.Integer({ default: 30, minimum: 1, maximum: 1e9, description: 'Uploads (attachments, avatars) per user per minute' }),
  SEARCH_RATE_LIMIT_MAX: Type.Integer({ default: 60, minimum: 1, maximum: 1e9, description: 'Message and directory searches per user per minute' }),
  AUTH_RATE_LIMIT_MAX: Type.Integer({ default: 30, minimum: 1, maximum: 1e9, description: 'Requests per IP per minute on each /api/auth route' }),
  LOGIN_FAILURE_LIMIT: Type.Integer({ maximum: MAX_INT, default: 10, minimum: 1, description: 'Failed sign-ins per account per 15 minutes before 429' }),
  CODE_GUESS_LIMIT: Type.Integer({ maximum: MAX_INT, default: 20, minimum: 1, description: 'Code guesses per email per 15 minutes before 429' }),
  MESSAGE_MAX_LENGTH: Type.Integer({ default: 4000, minimum: 1, maximum: 100000, description: 'Characters per message text' }),
  MESSAGE_MAX_ATTACHMENTS: Type.Integer({ default: 10, minimum: 0, maximum: 100 }),
  GROUP_MAX_MEMBERS: Type.Integer({ default: 256, minimum: 2, maximum: 10000 }),
  KEPT_PAGES_MB: Type.Optional(Type.Integer({ minimum: 0, maximum: 65536, description: 'Memory (estimated) an instance gives to the history pages it keeps to answer again, and as much to list pages; 0 keeps none. Default: 1/32 of the V8 heap limit (so both kinds together take at most 1/16 of it)' })),
  CONVERSATION_WRITE_DELAY_MS: Type.Integer({ default: 1000, minimum: 0, maximum: 60000, description: 'How long a conversation\'s new activity waits before it is written to the database, so that the changes of that window are one write' }),
  WS_MAX_CONNECTIONS_PER_USER: Type.Integer({ default: 20, minimum: 1, maximum: 1000 }),
  WS_RATE_PER_SECOND: Type.Number({ default: 20, minimum: 0.1, description: 'Frames a connection may send per second (sustained)' }),
  WS_RATE_BURST: Type.Integer({ maximum: MAX_INT, default: 40, minimum: 1, description: 'Frames a connection may send at once' }),
  WS_MAX_BUFFERED_BYTES: Type.Integer({ maximum: MAX_INT, default: 1048576, minimum: 1024, description: 'A socket whose unsent data passes this is closed (1013)' }),
  WS_HEARTBEAT_MS: Type.Integer({ maximum: MAX_INT, default: 30000, minimum: 100, description: 'Ping interval; a socket that missed the previous pong is terminated' }),
  PRESENCE_TTL_S: Type.Integer({ default: 60, minimum: 1, maximum: 3600, description: 'How long a connection counts as online without a heartbeat (dead instances)' }),
  PRESENCE_GRACE_MS: Type.Integer({ default: 3000, minimum: 0, maximum: 60000, description: 'Delay before a user whose last socket closed is announced offline' }),
  TYPING_TTL_MS: Type.Integer({ default: 5000, minimum: 500, maximum: 60000 }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'Bearer token a Prometheus scraper presents at GET /metrics; without it /metrics does not exist' })),
  VAPID_PUBLIC_KEY: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{87}$', description: 'Web Push application server key (P-256 public key, base64url); generated and shared through Redis outside production' })),
  VAPID_PRIVATE_KEY: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'Its private key (base64url)' })),
  VAPID_SUBJECT: Type.String({ default: 'mailto:admin@parley.invalid', pattern: '^(mailto:|https://)', description: 'How push services reach the operator (mailto: or https: URL)' }),
  PUSH_COLLAPSE_MS: Type.Integer({ default: 2000, minimum: 0, maximum: 600000, description: 'Messages to one offline user in one conversation within this window become one push' }),
  EVENT_WORKER: Type.Boolean({ default: true, description: 'Run the push and webhook workers inside the API process' }),
  WEBHOOK_ATTEMPTS: Type.Integer({ default: 8, minimum: 1, maximum: 20, description: 'Deliveries tried per event before it counts as failed' }),
  WEBHOOK_BACKOFF_MS: Type.Integer({ default: 10000, minimum: 10, maximum: 3600000, description: 'First retry delay; doubled at each attempt' }),
  WEBHOOK_TIMEOUT_MS: Type.Integer({ default: 10000, minimum: 100, maximum: 60000 }),
  WEBHOOK_DISABLE_AFTER: Type.Integer({ default: 5, minimum: 1, maximum: 1000, description: 'Failed events in a row after which a webhook is disabled' }),
  OUTBOUND_ALLOW_PRIVATE: Type.Boolean({ default: false, description: 'Let webhooks and push endpoints reach private, loopback and link-local addresses' }),
  OUTBOUND_ALLOWED_ADDRESSES: Type.String({ default: '', pattern: '^[0-9A-Fa-f.:/, ]*$', description: 'Comma-separated addresses or CIDR ranges webhooks and push endpoints may reach whatever their kind' }),
  OUTBOUND_CA_FILE: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of extra certificate authorities trusted by webhook and push requests (an internal CA)' })),
  MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ maximum: MAX_INT, default: 1000, minimum: 0, description: '503 when the event loop lags more than this (0 disables)' })
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>

// What the app actually runs with: secrets are always present, lists parsed.
export interface ResolvedConfig extends Omit<Config, 'JWT_SECRET' | 'HASH_SECRET' | 'COOKIE_SECURE' | 'KEPT_PAGES_MB'> {
  JWT_SECRET: string
  HASH_SECRET: string
  COOKIE_SECURE: boolean
  KEPT_PAGES_MB: number
  corsOrigins: string[]
  /** Seed nodes of the Redis Cluster (host:port), empty for a single Redis. */
  redisClusterNodes: string[]
  outboundAllowedAddresses: string[]
  /** JWT_SECRET and HASH_SECRET were not configured (outside production): plugins/keys.ts shares generated ones through Redis. */
  secretsGenerated: boolean
}

export type ConfigInput = { [K in keyof Config]?: Config[K] | string }

const knownKeys = new Set(Object.keys(ConfigSchema.properties))

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * Validates the environment (plus explicit overrides, as tests pass them) and
 * throws a ConfigError that names every bad value.
 */
export function loadConfig (overrides: ConfigInput = {}, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const unknown = Object.keys(overrides).filter((k) => !knownKeys.has(k))
  if (unknown.length > 0) throw new ConfigError(`Unknown configuration keys: ${unknown.join(', ')}`)

  const fromEnv: Record<string, unknown> = {}
  for (const key of knownKeys) {
    const value = env[key]
    if (value !== undefined && value !== '') fromEnv[key] = value
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) fromEnv[key] = value
  }
  // A cluster is named by its seeds; REDIS_URL then only carries credentials.
  if (fromEnv.REDIS_URL === undefined && typeof fromEnv.REDIS_CLUSTER_NODES === 'string' && fromEnv.REDIS_CLUSTER_NODES !== '') {
    fromEnv.REDIS_URL = `redis://${fromEnv.REDIS_CLUSTER_NODES.split(',')[0]!.replace(/^rediss?:\/\//, '')}`
  }

  let config: Config
  try {
    config = envSchema<Config>({ schema: ConfigSchema, data: fromEnv, env: false, dotenv: false })
  } catch (err) {
    throw new ConfigError(`Invalid configuration: ${(err as Error).message}`)
  }

  const production = config.NODE_ENV === 'production'
  for (const key of ['JWT_SECRET', 'HASH_SECRET'] as const) {
    if (production && config[key] === undefined) throw new ConfigError(`${key} is required in production (at least 32 characters)`)
  }
  if (config.JWT_SECRET !== undefined && config.JWT_SECRET === config.HASH_SECRET) {
    throw new ConfigError('JWT_SECRET and HASH_SECRET must differ')
  }
  if (production && config.SMTP_URL === undefined) throw new ConfigError('SMTP_URL is required in production')
  if ((config.VAPID_PUBLIC_KEY === undefined) !== (config.VAPID_PRIVATE_KEY === undefined)) throw new ConfigError('VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY go together')
  if (production && config.VAPID_PUBLIC_KEY === undefined) throw new ConfigError('VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY are required in production (npx web-push generate-vapid-keys)')

  const outboundAllowedAddresses = config.OUTBOUND_ALLOWED_ADDRESSES.split(',').map((a) => a.trim()).filter(Boolean)
  for (const entry of outboundAllowedAddresses) {
    const [address, bits] = entry.split('/')
    const family = isIP(address ?? '')
    if (family === 0 || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)))) {
      throw new ConfigError(`OUTBOUND_ALLOWED_ADDRESSES: "${entry}" is not an address or CIDR range`)
    }
  }

  const corsOrigins = config.CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean)
  for (const origin of corsOrigins) {
    let parsed: URL
    try {
      parsed = new URL(origin)
    } catch {
      throw new ConfigError(`CORS_ORIGINS: "${origin}" is not a URL origin`)
    }
    if (parsed.origin !== origin) throw new ConfigError(`CORS_ORIGINS: "${origin}" must be a bare origin such as ${parsed.origin}`)
  }

  const redisClusterNodes = config.REDIS_CLUSTER_NODES.split(',').filter(Boolean)
  for (const node of redisClusterNodes) {
    if (!/^(rediss?:\/\/)?[^:/@]+:\d{1,5}$/.test(node)) throw new ConfigError(`REDIS_CLUSTER_NODES: "${node}" is not host:port`)
  }

  return {
    ...config,
    redisClusterNodes: redisClusterNodes.map((node) => node.replace(/^rediss?:\/\//, '')),
    // Outside production missing secrets are generated; every instance on the
    // same Redis then adopts the first one's (plugins/keys.ts).
    JWT_SECRET: config.JWT_SECRET ?? randomBytes(32).toString('base64url'),
    HASH_SECRET: config.HASH_SECRET ?? randomBytes(32).toString('base64url'),
    COOKIE_SECURE: config.COOKIE_SECURE ?? production,
    // Sized from this process's heap: ~129 MB per kind with Node's default limit on a 24 GB machine, ~17 MB at --max-old-space-size=512.
    KEPT_PAGES_MB: config.KEPT_PAGES_MB ?? Math.floor(getHeapStatistics().heap_size_limit / 32 / 2 ** 20),
    corsOrigins,
    outboundAllowedAddresses,
    secretsGenerated: config.JWT_SECRET === undefined || config.HASH_SECRET === undefined
  }
}
