// `npm test` (after the type check and lint): provides Redis and a MongoDB-wire
// server once for the whole run — the configured ones, or servers started here
// on free loopback ports — then runs tap against them and stops what it started.
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { provideServers } from './embedded.js'

const say = (message: string): void => { console.log(`[test] ${message}`) }
const tapBin = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '.bin', 'tap')

const servers = await provideServers(process.env, { log: say })
const child = spawn(tapBin, process.argv.slice(2), {
  stdio: ['inherit', 'pipe', 'inherit'],
  env: { ...process.env, MONGODB_URI: servers.MONGODB_URI, REDIS_URL: servers.REDIS_URL }
})
// tap's own summary is `# { total: N, pass: P, fail: F, ... }`; it is repeated
// at the end as the plain "P passed, F failed" line that CI systems read.
let summary: { pass: number, fail: number } | undefined
let pending = ''
child.stdout!.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk)
  const lines = (pending + chunk.toString()).split('\n')
  pending = lines.pop() ?? ''
  for (const line of lines) {
    const match = /^# \{ total: \d+(.*)\}/.exec(line)
    if (match) {
      summary = {
        pass: Number(/pass: (\d+)/.exec(match[1]!)?.[1] ?? 0),
        fail: Number(/fail: (\d+)/.exec(match[1]!)?.[1] ?? 0)
      }
    }
  }
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal))
const code = await new Promise<number>((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))))
await servers.stop()
if (summary) console.log(`tests: ${summary.pass} passed, ${summary.fail} failed`)
process.exit(code)
