// The SDK's cursor and outbox stores in IndexedDB, so that a reload resumes
// where the page was: no change delivered twice, no unsent message lost.
import type { CursorStore, OutboxStore, PendingMessage } from '../client/index.js'

function openDatabase (name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, 1)
    request.onupgradeneeded = () => {
      request.result.createObjectStore('cursors')
      request.result.createObjectStore('outbox', { keyPath: 'clientMsgId' })
    }
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
}

function run<T> (db: Promise<IDBDatabase>, store: string, mode: IDBTransactionMode, work: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  return db.then((database) => new Promise<T>((resolve, reject) => {
    const request = work(database.transaction(store, mode).objectStore(store))
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  }))
}

/** One database per signed-in user, so that two accounts in one browser never mix. */
export function indexedDbStores (userId: string): { cursors: CursorStore, outbox: OutboxStore } {
  const db = openDatabase(`parley-${userId}`)
  const cursors: CursorStore = {
    get: (id) => run<number | undefined>(db, 'cursors', 'readonly', (s) => s.get(id)),
    set: async (id, changeSeq) => {
      const current = await cursors.get(id)
      if (current === undefined || changeSeq > current) await run(db, 'cursors', 'readwrite', (s) => s.put(changeSeq, id))
    },
    delete: async (id) => { await run(db, 'cursors', 'readwrite', (s) => s.delete(id)) },
    all: async () => {
      const [keys, values] = await Promise.all([
        run<IDBValidKey[]>(db, 'cursors', 'readonly', (s) => s.getAllKeys()),
        run<number[]>(db, 'cursors', 'readonly', (s) => s.getAll())
      ])
      return keys.map((key, i) => ({ conversationId: String(key), changeSeq: values[i]! }))
    }
  }
  const outbox: OutboxStore = {
    put: async (message) => { await run(db, 'outbox', 'readwrite', (s) => s.put(message)) },
    delete: async (id) => { await run(db, 'outbox', 'readwrite', (s) => s.delete(id)) },
    all: async () => (await run<PendingMessage[]>(db, 'outbox', 'readonly', (s) => s.getAll())).sort((a, b) => a.queuedAt - b.queuedAt)
  }
  return { cursors, outbox }
}
