import type { Db, IndexDescription } from 'mongodb'

// Every query path has its index here; they are created at boot and creating an
// existing index is a no-op, so boot is idempotent. Only plain, unique and
// compound indexes: TTL and partial indexes do not exist on FerretDB 1.24.
export const indexes: Record<string, IndexDescription[]> = {
  users: [
    { key: { email: 1 }, name: 'email_unique', unique: true },
    { key: { usernameLower: 1 }, name: 'username_unique', unique: true }
  ]
}

export async function ensureIndexes (db: Db): Promise<void> {
  // One index per createIndexes command: FerretDB 1.24 drops the connection when
  // a multi-index createIndexes names indexes that all exist already.
  await Promise.all(Object.entries(indexes).map(async ([collection, specs]) => {
    for (const spec of specs) await db.collection(collection).createIndexes([spec])
  }))
}
