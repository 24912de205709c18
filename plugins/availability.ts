// A dependency outage is a fast 503, never a 500 and never a request that waits
// for reconnect retries. The state of each connection is tracked from its own
// events; while one is down, API requests are refused before any work, and an
// error that a dependency caused mid-request is answered as 503 too.
import fp from 'fastify-plugin'
import {
  MongoNetworkError, MongoNotConnectedError, MongoServerSelectionError, MongoTopologyClosedError
} from 'mongodb'
import { ServiceUnavailable, withRetryAfter } from '../services/errors.js'
import { SERVICE_RETRY_AFTER_S } from './errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The dependencies that are down right now (empty when all are up). */
    dependenciesDown: () => string[]
    /** True for an error that a lost dependency caused rather than the request. */
    isDependencyError: (err: unknown) => boolean
  }
}

// Paths that work, or report, without the dependencies.
const exempt = /^\/(health|docs|metrics|app)(\/|$|\?)/

const mongoErrors = [MongoNetworkError, MongoNotConnectedError, MongoServerSelectionError, MongoTopologyClosedError]
// ioredis: commands refused while disconnected (no offline queue), or given up
// after retries; on a cluster also a shard without a primary (failover under
// way) and a redirection that could not be followed while slots were moving.
const redisErrorMessages = new RegExp([
  'enableOfflineQueue', 'Connection is closed', 'max retries per request', 'LOADING ',
  'CLUSTERDOWN', 'TRYAGAIN', 'MASTERDOWN', 'Too many Cluster redirections', 'Failed to refresh slots cache',
  'None of startup nodes is available', 'same slots allocation group', "Cluster isn't ready", '^MOVED ', '^ASK '
].join('|'), 'i')

export default fp(async (fastify) => {
  let mongoUp = true
  // The driver marks the server Unknown on a failed heartbeat or a network
  // error of an operation, and known again on the next good heartbeat.
  fastify.mongo.client.on('topologyDescriptionChanged', (event) => {
    const up = [...event.newDescription.servers.values()].some((server) => server.isDataBearing)
    if (up !== mongoUp) fastify.log.warn({ mongodb: up ? 'up' : 'down' }, up ? 'mongodb reachable again' : 'mongodb unreachable')
    mongoUp = up
  })

  const dependenciesDown = (): string[] => {
    const down: string[] = []
    if (!mongoUp) down.push('mongodb')
    if (fastify.redis.status !== 'ready') down.push('redis')
    return down
  }

  const isDependencyError = (err: unknown): boolean => {
    if (!(err instanceof Error)) return false
    if (mongoErrors.some((type) => err instanceof type)) return true
    return err.name === 'MaxRetriesPerRequestError' || err.name === 'ClusterAllFailedError' || redisErrorMessages.test(err.message)
  }

  fastify.decorate('dependenciesDown', dependenciesDown)
  fastify.decorate('isDependencyError', isDependencyError)

  fastify.addHook('onRequest', async (request) => {
    if (exempt.test(request.url)) return
    const down = dependenciesDown()
    if (down.length > 0) throw withRetryAfter(Object.assign(new ServiceUnavailable(), { dependenciesDown: down }), SERVICE_RETRY_AFTER_S)
  })
}, { name: 'availability', dependencies: ['config', 'db', 'redis', 'errors'] })
