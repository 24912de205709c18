// One way to open Redis connections, for a single Redis and for Redis Cluster
// alike, so that the rest of the code runs unchanged on either.
//
// What the code must respect to run on a cluster:
// - A multi-key command, script or MULTI touches keys of one hash slot only:
//   keys that belong together carry the same `{tag}` (see `tagged`).
// - Batches over many keys are issued together (`Promise.all`) instead of an
//   explicit pipeline. On a single Redis auto-pipelining sends each batch as
//   the one pipeline it always was. On a cluster the commands go out one by
//   one, concurrently (still one round trip of latency): ioredis retries a
//   redirected command (MOVED after a failover or a resharding) on its own,
//   but gives up on an auto-pipeline whose commands were redirected differently.
// - Events use sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7): on a cluster a
//   channel lives on the shard of its slot instead of being broadcast to every node.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'

export type RedisClient = Redis | Cluster

export interface RedisTarget {
  /** The single Redis, or (with cluster nodes) the credentials and TLS for every node. */
  url: string
  /** Seed nodes (host:port) of a Redis Cluster; empty for a single Redis. */
  clusterNodes: string[]
}

/** Opens a connection to the single Redis or the cluster; `options` are per node. */
export function openRedis (target: RedisTarget, options: RedisOptions = {}): RedisClient {
  if (target.clusterNodes.length === 0) return new Redis(target.url, { enableAutoPipelining: true, ...options })
  const { keyPrefix, enableOfflineQueue, lazyConnect, enableAutoPipelining, ...nodeOptions } = options
  const url = new URL(target.url)
  const clusterOptions: ClusterOptions = {
    keyPrefix,
    enableOfflineQueue,
    lazyConnect,
    enableAutoPipelining: enableAutoPipelining ?? false,
    // Sharded pub/sub: one subscriber connection per primary, created on demand.
    shardedSubscribers: true,
    // A failed-over primary is replaced within seconds; commands wait that long, not longer.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    redisOptions: {
      ...nodeOptions,
      username: url.username === '' ? undefined : decodeURIComponent(url.username),
      password: url.password === '' ? undefined : decodeURIComponent(url.password),
      tls: url.protocol === 'rediss:' ? {} : undefined
    }
  }
  return new Cluster(target.clusterNodes.map((node) => {
    const [host, port] = node.split(':') as [string, string]
    return { host, port: Number(port) }
  }), clusterOptions)
}

/**
 * BullMQ's key prefix: a hash tag, so that every key of a queue lands in one
 * slot of a cluster (BullMQ's scripts touch several keys at once).
 */
export function queuePrefix (redisPrefix: string): string {
  return `{${redisPrefix}:bull}`
}

/**
 * Values of many keys, in order: one MGET on a single Redis; on a cluster,
 * where one MGET cannot span slots, one GET per key, sent together.
 */
export async function getMany (client: RedisClient, keys: string[]): Promise<Array<string | null>> {
  if (keys.length === 0) return []
  return client instanceof Cluster ? Promise.all(keys.map((key) => client.get(key))) : client.mget(keys)
}

/** Every primary of a cluster, or the single Redis itself: for scans and server-wide commands. */
export function primaries (client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client]
}

/**
 * Writes that readers must see land in the order given, in as few round trips
 * as the topology allows. A single Redis runs the commands of one connection
 * in the order they were sent, so every step is sent at once (one round trip);
 * on a cluster the keys may live on different nodes, so each step waits for
 * the one before it. Each step must send its commands before it first awaits.
 * What lands on a single Redis is still a prefix of the steps, as one after
 * the other would leave it: a connection lost midway ends the commands in the
 * order sent, and what makes Redis refuse a write (out of memory) refuses the
 * later ones too. The exception is a script Redis forgot while the connection
 * stayed open (SCRIPT FLUSH): ioredis sends it again after its NOSCRIPT reply,
 * behind the later steps.
 */
export async function inOrder (client: RedisClient, steps: Array<() => Promise<unknown>>): Promise<void> {
  if (client instanceof Cluster) {
    for (const step of steps) await step()
    return
  }
  await Promise.all(steps.map((step) => step()))
}
