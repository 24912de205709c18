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
// - Writes coalesce: a conversation's first change waits `delayMs` before it
//   is written, and every change in that window (and while its write is in
//   flight) becomes that one write, so a busy conversation costs the database
//   about one update per `delayMs`, not one per message. A write applies only
//   over an older state (by change number), so writes from several instances
//   land in any order.
// - Conversations due together go out as unordered bulk writes of a few
//   updates (one round trip each on MongoDB).
// - The number of conversations waiting is bounded: past it, writers wait
//   (back-pressure instead of an unbounded queue), and `flushAll` writes
//   everything at once when the app stops.
import type { Collection } from 'mongodb'
import type { ConversationDoc } from './conversations.js'

export type ConversationActivity = ReturnType<typeof createConversationActivity>

export function createConversationActivity (deps: {
  conversations: Collection<ConversationDoc>
  /** How long a conversation's first change waits for later ones to join its write. */
  delayMs?: number
  /**
   * Bulk writes in flight at once. One: the fewer in flight, the more later
   * changes coalesce, and the less of the database the writes behind take
   * from the sends (on MongoDB one in flight is thousands of updates a second).
   */
  concurrency?: number
  /**
   * Conversations in one bulk write. Few: FerretDB 1.24 holds one of its 100
   * SQLite connections per matched update until the whole command ends, and
   * stops answering once updates in flight hold them all.
   */
  batchSize?: number
  /** Conversations waiting before writers are held back. */
  maxPending?: number
  onError?: (err: unknown) => void
}) {
  const { conversations } = deps
  const delayMs = deps.delayMs ?? 1000
  const concurrency = deps.concurrency ?? 1
  const batchSize = deps.batchSize ?? 8
  const maxPending = deps.maxPending ?? 5000
  /** The newest state not yet sent to the database, per conversation. */
  const pending = new Map<string, ConversationDoc>()
  /** Conversations waiting for their turn, oldest first, each once, with when it is due. */
  const queue: Array<{ id: string, due: number }> = []
  const queued = new Set<string>()
  const inFlight = new Set<string>()
  let batchesInFlight = 0
  let flushing = false
  let timer: NodeJS.Timeout | undefined
  const drainedWaiters: Array<() => void> = []
  const roomWaiters: Array<() => void> = []

  /** Brings the stored documents up to these states, each unless it already is at or past it. */
  async function write (docs: ConversationDoc[]): Promise<void> {
    await conversations.bulkWrite(docs.map((doc) => ({
      updateOne: {
        filter: { _id: doc._id, changeSeq: { $lt: doc.changeSeq } },
        update: {
          $set: { lastMessage: doc.lastMessage, lastActivityAt: doc.lastActivityAt, updatedAt: doc.updatedAt, lastSentSeq: doc.lastSentSeq },
          $max: { lastSeq: doc.lastSeq, changeSeq: doc.changeSeq, version: doc.version }
        }
      }
    })), { ordered: false })
  }

  function enqueue (id: string, due: number): void {
    if (queued.has(id)) return
    queued.add(id)
    queue.push({ id, due })
  }

  function settle (docs: ConversationDoc[], failed: boolean): void {
    batchesInFlight--
    for (const doc of docs) {
      const id = doc._id.toHexString()
      inFlight.delete(id)
      // The database is away: keep the newest state and try again after the delay.
      if (failed && (!pending.has(id) || pending.get(id)!.changeSeq < doc.changeSeq)) pending.set(id, doc)
      // Changes made while this write was in flight have waited long enough unless it failed.
      if (pending.has(id)) enqueue(id, failed ? performance.now() + Math.max(delayMs, 1000) : 0)
    }
    for (const wake of roomWaiters.splice(0)) wake()
    if (pending.size === 0 && inFlight.size === 0) {
      flushing = false
      for (const wake of drainedWaiters.splice(0)) wake()
    }
    pump()
  }

  function pump (): void {
    const now = performance.now()
    const isDue = (): boolean => queue.length > 0 && (flushing || queue[0]!.due <= now)
    while (batchesInFlight < concurrency && isDue()) {
      const batch: ConversationDoc[] = []
      while (batch.length < batchSize && isDue()) {
        const entry = queue.shift()!
        queued.delete(entry.id)
        const doc = pending.get(entry.id)
        // One write per conversation at a time: one in flight is queued again when its write settles.
        if (!doc || inFlight.has(entry.id)) continue
        pending.delete(entry.id)
        inFlight.add(entry.id)
        batch.push(doc)
      }
      if (batch.length === 0) break
      batchesInFlight++
      write(batch).then(() => settle(batch, false), (err: unknown) => {
        deps.onError?.(err)
        settle(batch, true)
      })
    }
    if (timer === undefined && queue.length > 0 && !flushing && batchesInFlight < concurrency) {
      timer = setTimeout(() => { timer = undefined; pump() }, Math.max(0, queue[0]!.due - now) + 1).unref()
    }
  }

  /** Records the conversation's new state in the database, soon; waits only while too many are waiting. */
  async function record (doc: ConversationDoc): Promise<void> {
    const id = doc._id.toHexString()
    while (!pending.has(id) && pending.size >= maxPending) await new Promise<void>((resolve) => roomWaiters.push(resolve))
    const queuedDoc = pending.get(id)
    if (queuedDoc && queuedDoc.changeSeq > doc.changeSeq) return
    pending.set(id, doc)
    if (!inFlight.has(id)) enqueue(id, performance.now() + delayMs)
    pump()
  }

  /** Everything recorded so far is written, without waiting for the delay (or `timeoutMs` passed). */
  async function flushAll (timeoutMs = 5000): Promise<void> {
    if (pending.size === 0 && inFlight.size === 0) return
    flushing = true
    const drained = new Promise<void>((resolve) => drainedWaiters.push(resolve))
    pump()
    await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())])
  }

  return { record, flushAll, get waiting () { return pending.size + inFlight.size } }
}
