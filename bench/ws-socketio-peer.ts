// The peer the WebSocket benchmark compares Parley with: the common Socket.IO
// chat server. Instances share a Redis through @socket.io/redis-adapter, and
// each message is inserted into MongoDB before it is broadcast to its room and
// acked — persisted like Parley's, but not numbered, not idempotent and
// without membership checks. Clients join a room with ?group=<n>.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import { MongoClient } from 'mongodb'

const mongo = new MongoClient(process.env.MONGODB_URI!)
const messages = mongo.db().collection('socketio_peer_messages')
const pub = new Redis(process.env.REDIS_URL!)
const sub = pub.duplicate()

const http = createServer()
const io = new Server(http, { adapter: createAdapter(pub, sub), transports: ['websocket'], perMessageDeflate: false, maxHttpBufferSize: 64 * 1024 })
io.on('connection', (socket) => {
  const group = String(socket.handshake.query.group ?? '0')
  socket.join(group) // in-process adapter state; returns nothing to wait for with the Redis adapter
  socket.on('send', async (data: { clientMsgId: string, text: string }, ack: (reply: unknown) => void) => {
    const message = { conversationId: group, clientMsgId: String(data.clientMsgId), text: String(data.text), createdAt: new Date() }
    try {
      await messages.insertOne({ ...message })
    } catch {
      ack({ error: 'not stored' })
      return
    }
    io.to(group).emit('message.created', { message })
    ack({ message })
  })
})
http.listen(0, '127.0.0.1', () => {
  const address = http.address()
  if (address !== null && typeof address === 'object') console.log(`listening ${address.port}`)
})
process.on('SIGTERM', () => {
  io.close(() => {
    pub.disconnect()
    sub.disconnect()
    mongo.close().finally(() => process.exit(0)).catch(() => process.exit(1))
  })
})
