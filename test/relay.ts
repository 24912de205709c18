// A TCP relay in front of an app instance that plays the load balancer and
// the network: it can send new connections to another instance, cut every
// open connection, refuse new ones (the client is offline), or lose what the
// server sends (a reply that never arrives).
import { once } from 'node:events'
import { createServer, connect as tcpConnect, type Socket } from 'node:net'

export interface Relay {
  url: string
  target: (port: number) => void
  cut: () => void
  refuse: (refusing: boolean) => void
  /** While set, what the server sends is dropped on the way (requests still arrive). */
  loseReplies: (losing: boolean) => void
  close: () => Promise<void>
}

export async function relay (port: number): Promise<Relay> {
  let targetPort = port
  let refusing = false
  let losingReplies = false
  const open = new Set<Socket>()
  const server = createServer((client) => {
    if (refusing) { client.destroy(); return }
    const upstream = tcpConnect({ host: '127.0.0.1', port: targetPort })
    open.add(client).add(upstream)
    const drop = (): void => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream) }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => { if (!losingReplies) client.write(chunk) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const cut = (): void => { for (const socket of open) socket.destroy(); open.clear() }
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    target: (p) => { targetPort = p },
    cut,
    refuse: (value) => { refusing = value },
    loseReplies: (value) => { losingReplies = value },
    close: async () => { cut(); server.close(); await once(server, 'close') }
  }
}
