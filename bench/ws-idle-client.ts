// Opens COUNT idle, authenticated sockets to URL (tokens from BENCH_TOKENS, used
// in turn) and holds them until told to stop; prints "open <n>" when they are
// all open. A child process of its own, so the sockets' file descriptors do not
// count against the bench runner's.
import WebSocket from 'ws'

const [url, countText] = process.argv.slice(2) as [string, string]
const count = Number(countText)
const tokens = (process.env.BENCH_TOKENS ?? '').split(',')
const sockets: WebSocket[] = []
let open = 0
let failed = 0
const BATCH = 200
for (let i = 0; i < count; i += BATCH) {
  await Promise.all(Array.from({ length: Math.min(BATCH, count - i) }, (_, j) => new Promise<void>((resolve) => {
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${tokens[(i + j) % tokens.length]}` }, perMessageDeflate: false })
    socket.on('open', () => { open++; resolve() })
    socket.on('error', () => { failed++; resolve() })
    sockets.push(socket)
  })))
}
console.log(`open ${open} failed ${failed}`)
process.on('SIGTERM', () => { for (const s of sockets) s.terminate(); process.exit(0) })
setInterval(() => {}, 1 << 30)
