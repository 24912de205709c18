// A WebSocket test client: a real `ws` socket to a listening app, with helpers
// to send requests and wait for acks and events.
import { once } from 'node:events'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'

export interface Frame {
  type: string
  ref?: string | null
  // Whatever JSON the server sent; the tests assert on its shape.
  data?: any
  code?: string
  message?: string
}

export interface TestSocket {
  socket: WebSocket
  frames: Frame[]
  request: (type: string, data?: unknown, timeoutMs?: number) => Promise<Frame>
  waitFor: (predicate: (f: Frame) => boolean, timeoutMs?: number) => Promise<Frame>
  closed: Promise<{ code: number, reason: string }>
  close: () => Promise<void>
}

export async function listen (app: FastifyInstance): Promise<string> {
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening')
  return `ws://127.0.0.1:${address.port}/ws`
}

let refs = 0

export async function connect (app: FastifyInstance, options: { token?: string, headers?: Record<string, string>, query?: string } = {}): Promise<TestSocket> {
  const url = await listen(app)
  const headers = { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers }
  const socket = new WebSocket(`${url}${options.query ?? ''}`, { headers, perMessageDeflate: false })
  const frames: Frame[] = []
  const waiters = new Set<() => void>()
  socket.on('message', (raw) => {
    frames.push(JSON.parse(raw.toString()))
    for (const wake of waiters) wake()
  })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
    socket.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode })))
  })

  const waitFor = (predicate: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> => new Promise((resolve, reject) => {
    let index = 0
    const check = (): boolean => {
      for (; index < frames.length; index++) {
        if (predicate(frames[index]!)) { cleanup(); resolve(frames[index]!); return true }
      }
      return false
    }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(frames.slice(-5))}`)) }, timeoutMs)
    const cleanup = (): void => { clearTimeout(timer); waiters.delete(wake) }
    const wake = (): void => { check() }
    if (!check()) waiters.add(wake)
  })

  return {
    socket,
    frames,
    closed,
    waitFor,
    request: (type, data, timeoutMs) => {
      const ref = `r${++refs}`
      socket.send(JSON.stringify({ type, ref, data }))
      return waitFor((f) => (f.type === 'ack' || f.type === 'error') && f.ref === ref, timeoutMs)
    },
    close: async () => {
      if (socket.readyState === WebSocket.CLOSED) return
      socket.close()
      await once(socket, 'close')
    }
  }
}

/** The HTTP status a refused handshake got. */
export async function refusedWith (app: FastifyInstance, options: Parameters<typeof connect>[1]): Promise<number> {
  try {
    const s = await connect(app, options)
    await s.close()
    return 101
  } catch (err) {
    return (err as { statusCode?: number }).statusCode ?? 0
  }
}
