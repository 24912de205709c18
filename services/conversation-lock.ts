// Writes to one conversation are serialised by a Redis mutex shared by every
// instance: messages are numbered in order, and the conversation's copy in the
// read model, which every write under the lock keeps current, is the state the
// next writer starts from (services/messages.ts, services/conversations.ts).
import { Mutex } from 'redis-semaphore'
import createError from '@fastify/error'
import type { RedisClient } from './redis-client.js'

export const Busy = createError('CONVERSATION_BUSY', 'The conversation is busy; retry', 503)

export type ConversationLock = <T>(conversationId: string, work: () => Promise<T>) => Promise<T>

export function createConversationLock (redis: RedisClient, onLockWait?: (seconds: number) => void): ConversationLock {
  // Writers of one conversation on this instance queue here first, so that only
  // one of them at a time competes (by polling Redis) for the shared mutex.
  const localQueues = new Map<string, Promise<unknown>>()

  async function withSharedLock<T> (conversationId: string, work: () => Promise<T>): Promise<T> {
    const mutex = new Mutex(redis, `lock:conversation:${conversationId}`, { lockTimeout: 15_000, acquireTimeout: 15_000, retryInterval: 3, refreshInterval: 5_000 })
    try {
      await mutex.acquire()
    } catch {
      throw new Busy()
    }
    try {
      return await work()
    } finally {
      await mutex.release().catch(() => {})
    }
  }

  return function withConversationLock<T> (conversationId: string, work: () => Promise<T>): Promise<T> {
    const previous = localQueues.get(conversationId) ?? Promise.resolve()
    const queuedAt = performance.now()
    const run = previous.catch(() => {}).then(() => withSharedLock(conversationId, () => {
      onLockWait?.((performance.now() - queuedAt) / 1000)
      return work()
    }))
    localQueues.set(conversationId, run)
    run.finally(() => { if (localQueues.get(conversationId) === run) localQueues.delete(conversationId) }).catch(() => {})
    return run
  }
}
