import fp from 'fastify-plugin'
import type { FastifyReply } from 'fastify'

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Sends a body the read model keeps and hands out again while its inputs
     * hold (readModel.keptHistoryPage, keptListPage): serialised by the route's
     * response schema once, not on every request.
     */
    sendKept: (payload: object) => FastifyReply
  }
}

export default fp(async (fastify) => {
  // Weak: a body is serialised for as long as the read model keeps the object.
  // Kept as bytes: encoding the same text again for every response cost ~4 % of a kept list.
  const serialized = new WeakMap<object, { route: string, body: Buffer }>()
  fastify.decorateReply('sendKept', function (this: FastifyReply, payload: object) {
    // The same object sent by another route or status would have another schema.
    const route = `${this.request.method} ${this.request.routeOptions.url ?? ''} ${this.statusCode}`
    const found = serialized.get(payload)
    const kept = found?.route === route ? found : { route, body: Buffer.from(this.serialize(payload) as string) }
    if (kept !== found) serialized.set(payload, kept)
    return this.type('application/json; charset=utf-8').send(kept.body)
  })
}, { name: 'kept-responses' })
