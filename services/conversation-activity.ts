// A conversation's activity (its counters, last message, last activity time,
// what each member last sent) changes with every message. Under the
// conversation's lock the read model's copy is the live state; the database
// learns it here, written behind the request:
//
// - The message itself is the durable record, stored before anything else, so
//   everything written here can be derived again from the messages (the read
//   model catches a conversation up from them when it rebuilds a copy, and a
//   sender repairs numbering from them), and nothing is lost if a write here
//   never happens.
// - Writes coalesce: while one conversation's write is in flight, later
//   changes wait and only the newest is written. A write applies only over an
//   older state (by change number), so writes from several instances land in
//   any order.
// - The number of conversations waiting is bounded: past it, writers wait
//   (back-pressure instead of an unbounded queue), and `flushAll` empties the
//   queue when the app stops.
import type { Collection } from 'mongodb'
import type { ConversationDoc } from './conversations.js'

export type ConversationActivity = ReturnType<typeof createConversationActivity>

export function createConversationActivity (deps: {
  conversations: Collection<ConversationDoc>
  /** Conversations written at once (few: the fewer in flight, the more later changes coalesce into the next write). */
  concurrency?: number
  /** Conversations waiting before writers are held back. */
  maxPending?: number
  onError?: (err: unknown) => void
}) {
  const { conversations } = deps
  const concurrency = deps.concurrency ?? 2
  const maxPending = deps.maxPending ?? 5000
  const pending = new Map<string, ConversationDoc>()
  const queue: string[] = []
  const inFlight = new Set<string>()
  const drainedWaiters: Array<() => void> = []
  const roomWaiters: Array<() => void> = []

  /** The update that brings the stored document up to `doc`, unless it already is at or past it. */
  async function write (doc: ConversationDoc): Promise<void> {
    await conversations.updateOne({ _id: doc._id, changeSeq: { $lt: doc.changeSeq } }, {
      $set: { lastMessage: doc.lastMessage, lastActivityAt: doc.lastActivityAt, updatedAt: doc.updatedAt, lastSentSeq: doc.lastSentSeq },
      $max: { lastSeq: doc.lastSeq, changeSeq: doc.changeSeq, version: doc.version }
    })
  }

  function pump (): void {
    while (inFlight.size < concurrency && queue.length > 0) {
      const id = queue.shift()!
      const doc = pending.get(id)
      if (!doc || inFlight.has(id)) continue
      pending.delete(id)
      inFlight.add(id)
      write(doc).catch((err: unknown) => {
        deps.onError?.(err)
        // The database is away: keep the newest state and try again shortly.
        if (!pending.has(id) || pending.get(id)!.changeSeq < doc.changeSeq) pending.set(id, doc)
        return new Promise((resolve) => setTimeout(resolve, 1000).unref())
      }).finally(() => {
        inFlight.delete(id)
        if (pending.has(id)) queue.push(id)
        for (const wake of roomWaiters.splice(0)) wake()
        if (pending.size === 0 && inFlight.size === 0) for (const wake of drainedWaiters.splice(0)) wake()
        pump()
      })
    }
  }

  /** Records the conversation's new state in the database, soon; waits only while too many are waiting. */
  async function record (doc: ConversationDoc): Promise<void> {
    const id = doc._id.toHexString()
    while (!pending.has(id) && pending.size >= maxPending) await new Promise<void>((resolve) => roomWaiters.push(resolve))
    const queued = pending.get(id)
    if (queued && queued.changeSeq > doc.changeSeq) return
    if (!queued && !inFlight.has(id)) queue.push(id)
    pending.set(id, doc)
    pump()
  }

  /** Everything recorded so far is written (or `timeoutMs` passed). */
  async function flushAll (timeoutMs = 5000): Promise<void> {
    if (pending.size === 0 && inFlight.size === 0) return
    await Promise.race([
      new Promise<void>((resolve) => drainedWaiters.push(resolve)),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())
    ])
  }

  return { record, flushAll, get waiting () { return pending.size + inFlight.size } }
}
