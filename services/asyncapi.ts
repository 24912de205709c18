// The AsyncAPI 3 document of the WebSocket protocol, generated from the same
// TypeBox schemas that validate the frames.
import { Type, type TSchema } from '@sinclair/typebox'
import { CLOSE, ErrorFrame, Ref, ackData, eventData, requestData } from '../schemas/ws.js'
import { MediaInfo, Message } from '../schemas/chat.js'

// Shared-schema references ("Message#") become AsyncAPI component references.
function localRefs (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(localRefs)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [key, inner] of Object.entries(value)) {
    if (key === '$id') continue
    out[key] = key === '$ref' && typeof inner === 'string' && /^[A-Za-z]+#$/.test(inner) ? `#/components/schemas/${inner.slice(0, -1)}` : localRefs(inner)
  }
  return out
}

export function buildAsyncApi (version: string): Record<string, unknown> {
  const messages: Record<string, unknown> = {}
  const receive: Array<{ $ref: string }> = []
  const send: Array<{ $ref: string }> = []
  for (const [type, schema] of Object.entries(requestData) as Array<[string, TSchema]>) {
    const name = `request.${type}`
    messages[name] = {
      name,
      title: `${type} request`,
      summary: schema.description,
      payload: localRefs(Type.Object({ type: Type.Literal(type), ref: Type.Optional(Ref), data: schema }))
    }
    receive.push({ $ref: `#/channels/ws/messages/${name}` })
  }
  for (const [type, schema] of Object.entries(eventData) as Array<[string, TSchema]>) {
    const name = `event.${type}`
    messages[name] = { name, title: `${type} event`, summary: schema.description, payload: localRefs(Type.Object({ type: Type.Literal(type), data: schema })) }
    send.push({ $ref: `#/channels/ws/messages/${name}` })
  }
  for (const [type, schema] of Object.entries(ackData) as Array<[string, TSchema]>) {
    const name = `ack.${type}`
    messages[name] = {
      name,
      title: `Acknowledgement of ${type}`,
      summary: `The answer to a ${type} request: its ref echoed, and this data`,
      payload: localRefs(Type.Object({ type: Type.Literal('ack'), ref: Type.Union([Ref, Type.Null()]), data: schema }))
    }
    send.push({ $ref: `#/channels/ws/messages/${name}` })
  }
  messages.error = { name: 'error', title: 'Error', payload: localRefs(ErrorFrame) }
  send.push({ $ref: '#/channels/ws/messages/error' })

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Parley WebSocket API',
      version,
      description: [
        'One WebSocket at /ws, authenticated at the handshake by the access-token cookie, `Authorization: Bearer`, or `?ticket=` from POST /api/ws/ticket; the Origin must be allowed.',
        'Frames are JSON text. Requests are `{type, ref?, data}`; the server answers each with `{type: "ack", ref, data}` or `{type: "error", ref, code, message}`. Events are `{type, data}`.',
        `Close codes: ${CLOSE.policy} rate limit abused, ${CLOSE.tooBig} frame over 64 KiB, ${CLOSE.restarting} server restarting (reconnect), ${CLOSE.overloaded} slow consumer, ${CLOSE.sessionEnded} session ended (sign in again).`,
        'After a reconnect, send `sync` with the last changeSeq of each conversation: the ack carries exactly what was missed, then the live stream continues with nothing lost or repeated.'
      ].join('\n\n')
    },
    servers: { local: { host: 'localhost:3000', protocol: 'ws', pathname: '/ws' } },
    channels: { ws: { address: '/ws', messages } },
    operations: {
      receiveRequests: { action: 'receive', channel: { $ref: '#/channels/ws' }, summary: 'Requests from clients', messages: receive },
      sendEvents: { action: 'send', channel: { $ref: '#/channels/ws' }, summary: 'Events, acks and errors to clients', messages: send }
    },
    components: { schemas: { Message: localRefs(Message), MediaInfo: localRefs(MediaInfo) } }
  }
}
