// Prometheus metrics: one registry per app instance (tests run several in one
// process), Node's default metrics (event-loop lag, heap, GC) and Parley's own.
// The other plugins record into `fastify.metrics`; GET /metrics (routes/metrics)
// serves them to a scraper that holds METRICS_TOKEN.
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: ReturnType<typeof createMetrics>
  }
}

function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'parley_' })
  const registers = [registry]
  return {
    registry,
    httpDuration: new Histogram({
      name: 'parley_http_request_duration_seconds',
      help: 'HTTP requests by method, route (its pattern, never the URL) and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers
    }),
    wsConnections: new Gauge({ name: 'parley_ws_connections', help: 'Open WebSocket connections on this instance', registers }),
    wsFrames: new Counter({ name: 'parley_ws_frames_total', help: 'WebSocket frames by direction (in: requests, out: acks, errors and events)', labelNames: ['direction'], registers }),
    eventsPublished: new Counter({ name: 'parley_events_published_total', help: 'Events published to user channels (one per addressed user)', registers }),
    eventsReceived: new Counter({ name: 'parley_events_received_total', help: 'Events this instance received from Redis', registers }),
    eventsDelivered: new Counter({ name: 'parley_events_delivered_total', help: 'Events handed to a local socket\'s user', registers }),
    fanOutLag: new Histogram({
      name: 'parley_fanout_lag_seconds',
      help: 'From publishing an event to its arrival at a subscribed instance',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers
    }),
    lockWait: new Histogram({
      name: 'parley_conversation_lock_wait_seconds',
      help: 'Waiting for a conversation\'s write mutex (local queue and Redis)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers
    }),
    readModelLookups: new Counter({
      name: 'parley_read_model_lookups_total',
      help: 'Read-model lookups by structure and result (hit: from Redis, miss: rebuilt from MongoDB; for history_page and list_page, hit: a page this instance kept, miss: built)',
      labelNames: ['structure', 'result'],
      registers
    }),
    pushes: new Counter({ name: 'parley_push_notifications_total', help: 'Web Push requests by result (sent; gone: the device was unsubscribed and forgotten; failed: retried)', labelNames: ['result'], registers }),
    webhookDeliveries: new Counter({ name: 'parley_webhook_deliveries_total', help: 'Webhook delivery attempts by result', labelNames: ['result'], registers }),
    emailJobsFailed: new Counter({ name: 'parley_email_jobs_failed_total', help: 'Email delivery attempts that failed (each retry counts)', registers })
  }
}

export default fp(async (fastify) => {
  const metrics = createMetrics()
  fastify.decorate('metrics', metrics)
  fastify.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe({ method: request.method, route: request.routeOptions.url ?? '(unmatched)', status: String(reply.statusCode) }, reply.elapsedTime / 1000)
  })
  fastify.addHook('onClose', async () => { metrics.registry.clear() })
}, { name: 'metrics', dependencies: ['config'] })
