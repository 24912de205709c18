// The ceiling for the WebSocket benchmark: a bare `ws` server doing the same
// fan-out in one process, with nothing stored, checked or shared. Clients join
// a group with ?group=<n>; a `send` is acked and broadcast to the group.
import { WebSocketServer, type WebSocket } from 'ws'

const groups = new Map<string, Set<WebSocket>>()
const seqs = new Map<string, number>()
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 * 1024 })
wss.on('connection', (socket, request) => {
  const group = new URL(request.url ?? '/', 'http://x').searchParams.get('group') ?? '0'
  let members = groups.get(group)
  if (!members) groups.set(group, members = new Set())
  members.add(socket)
  socket.on('close', () => members.delete(socket))
  socket.on('message', (raw) => {
    const frame = JSON.parse(raw.toString()) as { type: string, ref?: string, data: { clientMsgId: string, text: string } }
    if (frame.type !== 'send') return
    const seq = (seqs.get(group) ?? 0) + 1
    seqs.set(group, seq)
    const message = { conversationId: group, seq, clientMsgId: frame.data.clientMsgId, text: frame.data.text }
    socket.send(JSON.stringify({ type: 'ack', ref: frame.ref, data: { message } }))
    const event = JSON.stringify({ type: 'message.created', data: { message } })
    for (const member of members) member.send(event)
  })
})
wss.on('listening', () => {
  const address = wss.address()
  if (address !== null && typeof address === 'object') console.log(`listening ${address.port}`)
})
process.on('SIGTERM', () => { wss.close(); process.exit(0) })
