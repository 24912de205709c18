// What the SDK keeps between connections. Memory by default; the web app
// passes IndexedDB-backed stores so that a reload resumes where it was.

/** Per conversation, the last `changeSeq` the application has been given. */
export interface CursorStore {
  get: (conversationId: string) => Promise<number | undefined>
  set: (conversationId: string, changeSeq: number) => Promise<void>
  /** Forgets a conversation (the user left it or was removed). */
  delete: (conversationId: string) => Promise<void>
  all: () => Promise<Array<{ conversationId: string, changeSeq: number }>>
}

/** A message the application sent that the server has not acknowledged yet. */
export interface PendingMessage {
  clientMsgId: string
  conversationId: string
  text?: string
  attachments?: string[]
  replyTo?: string
  queuedAt: number
}

/** Unacknowledged sends, kept until acknowledged (survives a reload with a persistent store). */
export interface OutboxStore {
  put: (message: PendingMessage) => Promise<void>
  delete: (clientMsgId: string) => Promise<void>
  all: () => Promise<PendingMessage[]>
}

export function memoryCursorStore (): CursorStore {
  const cursors = new Map<string, number>()
  return {
    get: async (id) => cursors.get(id),
    set: async (id, changeSeq) => { cursors.set(id, Math.max(changeSeq, cursors.get(id) ?? 0)) },
    delete: async (id) => { cursors.delete(id) },
    all: async () => [...cursors].map(([conversationId, changeSeq]) => ({ conversationId, changeSeq }))
  }
}

export function memoryOutboxStore (): OutboxStore {
  const pending = new Map<string, PendingMessage>()
  return {
    put: async (message) => { pending.set(message.clientMsgId, message) },
    delete: async (id) => { pending.delete(id) },
    all: async () => [...pending.values()].sort((a, b) => a.queuedAt - b.queuedAt)
  }
}
