// Bot accounts: users without a password, owned by the user who created them,
// that sign in with API keys. A bot reads and posts through the same routes as
// anyone, in the conversations it was added to, and hears of new messages
// through a conversation's webhooks (it has no socket and no devices).
//
// An API key is `pk_<key id>_<secret>`. Only the SHA-256 of the secret is
// stored (the secret is 256 random bits, so a fast hash is as strong as a slow
// one); the key id finds the record. A key is checked through a Redis copy of
// its record, dropped when the key is revoked, so revocation is immediate.
import { createHash, randomBytes } from 'node:crypto'
import { ObjectId, type Collection, type Db } from 'mongodb'
import createError from '@fastify/error'
import type { Static } from '@sinclair/typebox'
import type { RedisClient } from './redis-client.js'
import { randomToken, sameHash } from './crypto.js'
import { DuplicateUserError, parseObjectId, toPublicUser, type UserDoc, type UserService } from './users.js'
import { UsernameTaken } from './errors.js'
import type { ApiKeyView, BotView } from '../schemas/integrations.js'

export const BotNotFound = createError('BOT_NOT_FOUND', 'No such bot of yours', 404)
export const ApiKeyNotFound = createError('API_KEY_NOT_FOUND', 'No such API key', 404)
export const TooManyKeys = createError('TOO_MANY_API_KEYS', 'A bot has at most %s API keys; revoke one first', 409)
export const TooManyBots = createError('TOO_MANY_BOTS', 'You have as many bots as allowed (%s)', 409)

export const MAX_KEYS_PER_BOT = 5
export const MAX_BOTS_PER_OWNER = 20
const CACHE_TTL_S = 60
const LAST_USED_EVERY_MS = 60_000

export interface ApiKeyDoc {
  _id: string // 16 hex digits
  botId: string
  secretHash: string
  createdAt: Date
  lastUsedAt: Date | null
}

const sha256 = (value: string): string => createHash('sha256').update(value).digest('base64url')
const cacheKey = (keyId: string): string => `apikey:${keyId}`
const KEY_PATTERN = /^pk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

/** Whether a bearer credential has the shape of an API key (rather than an access token). */
export const looksLikeApiKey = (token: string): boolean => token.startsWith('pk_')

export type BotService = ReturnType<typeof createBotService>

export function createBotService (deps: {
  db: Db
  redis: RedisClient
  users: UserService
  /** Erases an account as a user's own deletion does (messages stay, as "Deleted user"). */
  erase: (user: UserDoc) => Promise<void>
}) {
  const { db, redis, users, erase } = deps
  const keys: Collection<ApiKeyDoc> = db.collection<ApiKeyDoc>('api_keys')

  const keyView = (doc: ApiKeyDoc): Static<typeof ApiKeyView> => ({ id: doc._id, prefix: `pk_${doc._id}`, createdAt: doc.createdAt.toISOString(), lastUsedAt: doc.lastUsedAt?.toISOString() ?? null })

  async function view (bot: UserDoc): Promise<Static<typeof BotView>> {
    const botKeys = await keys.find({ botId: bot._id.toHexString() }).sort({ botId: 1, createdAt: 1 }).toArray()
    return { user: toPublicUser(bot), ownerId: bot.bot!.ownerId, keys: botKeys.map(keyView) }
  }

  async function issueKey (botId: string): Promise<{ doc: ApiKeyDoc, apiKey: string }> {
    const secret = randomToken(32)
    const doc: ApiKeyDoc = { _id: randomBytes(8).toString('hex'), botId, secretHash: sha256(secret), createdAt: new Date(), lastUsedAt: null }
    await keys.insertOne(doc)
    return { doc, apiKey: `pk_${doc._id}_${secret}` }
  }

  async function create (ownerId: string, input: { username: string, displayName?: string }): Promise<{ bot: Static<typeof BotView>, apiKey: string }> {
    if (await users.collection.countDocuments({ 'bot.ownerId': ownerId, deletedAt: { $exists: false } }, { limit: MAX_BOTS_PER_OWNER }) >= MAX_BOTS_PER_OWNER) {
      throw new TooManyBots(String(MAX_BOTS_PER_OWNER))
    }
    const _id = new ObjectId()
    let bot: UserDoc
    try {
      bot = await users.create({
        _id,
        // Unique like every account's, and no address anyone receives mail at.
        email: `bot-${_id.toHexString()}@bots.invalid`,
        username: input.username,
        ...(input.displayName !== undefined ? { displayName: input.displayName } : {}),
        // Not a hash any password verifies against; sign-in also refuses bots outright.
        passwordHash: '!',
        bot: { ownerId }
      })
    } catch (err) {
      if (err instanceof DuplicateUserError) throw new UsernameTaken()
      throw err
    }
    const { apiKey } = await issueKey(bot._id.toHexString())
    return { bot: await view(bot), apiKey }
  }

  async function ownBot (ownerId: string, botId: string): Promise<UserDoc> {
    const _id = parseObjectId(botId)
    const bot = _id ? await users.collection.findOne({ _id }) : null
    if (!bot?.bot || bot.bot.ownerId !== ownerId || bot.deletedAt) throw new BotNotFound()
    return bot
  }

  async function list (ownerId: string): Promise<Array<Static<typeof BotView>>> {
    const bots = await users.collection.find({ 'bot.ownerId': ownerId, deletedAt: { $exists: false } }).sort({ 'bot.ownerId': 1, createdAt: 1 }).toArray()
    return Promise.all(bots.map(view))
  }

  async function get (ownerId: string, botId: string): Promise<Static<typeof BotView>> {
    return view(await ownBot(ownerId, botId))
  }

  async function addKey (ownerId: string, botId: string): Promise<{ key: Static<typeof ApiKeyView>, apiKey: string }> {
    await ownBot(ownerId, botId)
    if (await keys.countDocuments({ botId }, { limit: MAX_KEYS_PER_BOT }) >= MAX_KEYS_PER_BOT) throw new TooManyKeys(String(MAX_KEYS_PER_BOT))
    const { doc, apiKey } = await issueKey(botId)
    return { key: keyView(doc), apiKey }
  }

  async function revokeKey (ownerId: string, botId: string, keyId: string): Promise<void> {
    await ownBot(ownerId, botId)
    const { deletedCount } = await keys.deleteOne({ _id: keyId, botId })
    await redis.del(cacheKey(keyId))
    if (deletedCount === 0) throw new ApiKeyNotFound()
  }

  /** Revokes every key, then erases the bot like a deleted account (its messages stay, from "Deleted user"). */
  async function remove (ownerId: string, botId: string): Promise<void> {
    await removeBot(await ownBot(ownerId, botId))
  }

  async function removeBot (bot: UserDoc): Promise<void> {
    const botId = bot._id.toHexString()
    const botKeys = await keys.find({ botId }, { projection: { _id: 1 } }).toArray()
    await keys.deleteMany({ botId })
    // One DEL per key: on a cluster they live on different shards.
    await Promise.all(botKeys.map((k) => redis.del(cacheKey(k._id))))
    await erase(bot)
  }

  /** Every bot of an owner whose account is erased. */
  async function removeOwnedBy (ownerId: string): Promise<void> {
    for (const bot of await users.collection.find({ 'bot.ownerId': ownerId, deletedAt: { $exists: false } }).toArray()) await removeBot(bot)
  }

  return { create, list, get, addKey, revokeKey, remove, removeOwnedBy }
}

/** Checks API keys (the auth plugin's part of bots). */
export function createApiKeyVerifier (db: Db, redis: RedisClient) {
  const keys: Collection<ApiKeyDoc> = db.collection<ApiKeyDoc>('api_keys')
  const lastUsedWritten = new Map<string, number>()

  /** The bot an API key belongs to, or null for anything that is not a live key. */
  async function verify (apiKey: string): Promise<{ botId: string, keyId: string } | null> {
    const match = KEY_PATTERN.exec(apiKey)
    if (!match) return null
    const [, keyId, secret] = match as unknown as [string, string, string]
    let record: { botId: string, secretHash: string } | null
    const cached = await redis.get(cacheKey(keyId))
    if (cached !== null) {
      record = cached === '' ? null : JSON.parse(cached) as { botId: string, secretHash: string }
    } else {
      const doc = await keys.findOne({ _id: keyId })
      record = doc ? { botId: doc.botId, secretHash: doc.secretHash } : null
      // Unknown ids are remembered briefly too: guessing costs the database nothing.
      await redis.set(cacheKey(keyId), record ? JSON.stringify(record) : '', 'EX', record ? CACHE_TTL_S : 10)
    }
    if (!record || !sameHash(record.secretHash, sha256(secret))) return null
    const now = Date.now()
    if ((lastUsedWritten.get(keyId) ?? 0) < now - LAST_USED_EVERY_MS) {
      if (lastUsedWritten.size > 10_000) lastUsedWritten.clear()
      lastUsedWritten.set(keyId, now)
      keys.updateOne({ _id: keyId }, { $set: { lastUsedAt: new Date(now) } }).catch(() => {})
    }
    return { botId: record.botId, keyId }
  }

  return verify
}
