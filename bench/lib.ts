import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import autocannon, { type Options } from 'autocannon'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')
export const duration = Number(process.env.BENCH_DURATION ?? 10)
export const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)

export interface Measured {
  requestsPerSecond: number
  latencyP50Ms: number
  latencyP99Ms: number
  non2xx: number
  errors: number
  /** Responses received in the run. */
  requests: number
}

export interface Started {
  url: string
  cwd: string
  child: ChildProcess
  output: () => string
  stop: () => Promise<void>
}

const tsxLoader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href

/** Starts a process and waits until `pattern` (with the port or URL in group 1) appears in its output. */
async function startProcess (args: string[], pattern: RegExp, env: NodeJS.ProcessEnv, cwd: string): Promise<Started> {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { output += c.toString() })
  const deadline = Date.now() + 120000
  let match: RegExpExecArray | null = null
  while (Date.now() < deadline && match === null && child.exitCode === null) {
    match = pattern.exec(output)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (match === null) {
    child.kill('SIGKILL')
    throw new Error(`process did not start:\n${output}`)
  }
  const url = match[1]!.startsWith('http') ? match[1]! : `http://127.0.0.1:${match[1]}`
  return {
    url,
    cwd,
    child,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
  }
}

export function startHello (): Promise<Started> {
  return startProcess(['--import', tsxLoader, join(root, 'bench/hello.ts')], /listening (\d+)/, process.env, root)
}

/** The real server (compiled build, embedded Redis + MongoDB-wire in a temp dir). */
export async function startParley (extraEnv: NodeJS.ProcessEnv = {}): Promise<Started> {
  const cwd = await mkdtemp(join(tmpdir(), 'parley-bench-'))
  // Reachable by the account an embedded PostgreSQL runs as (mkdtemp makes it its owner's alone).
  await chmod(cwd, 0o711)
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', LOG_LEVEL: 'warn', NODE_ENV: 'development', ...extraEnv }
  // Its own embedded servers, unless told which to use (a second instance).
  if (!extraEnv.MONGODB_URI) delete env.MONGODB_URI
  if (!extraEnv.REDIS_URL) delete env.REDIS_URL
  // server.ts prints "[parley] listening at URL" whatever the log level.
  // BENCH_PROFILE_DIR: each server writes a V8 CPU profile there when it stops.
  const profile = process.env.BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : []
  const started = await startProcess([...profile, join(root, 'dist/server.js')], /\[parley\] listening at (http:\/\/127\.0\.0\.1:\d+)/, env, cwd)
  const stop = started.stop
  return { ...started, stop: async () => { await stop(); await rm(cwd, { recursive: true, force: true }) } }
}

export async function measure (opts: Options): Promise<Measured> {
  const result = await autocannon({ connections, duration, ...opts })
  return {
    requestsPerSecond: Math.round(result.requests.average),
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    requests: result.requests.total
  }
}

export const ratio = (a: number, b: number): number => Math.round((a / b) * 1000) / 1000

/** The servers an embedded-default instance started, from what it printed. */
export function embeddedUrls (started: Started): { MONGODB_URI: string, REDIS_URL: string } {
  const REDIS_URL = /started redis-server \(pid \d+\) at (redis:\/\/\S+),/.exec(started.output())?.[1]
  if (!REDIS_URL) throw new Error('could not find the embedded Redis in the output')
  return { MONGODB_URI: embeddedMongo(started), REDIS_URL }
}

/** The MongoDB-wire server an instance started (it was given a Redis). */
export function embeddedMongo (started: Started): string {
  const MONGODB_URI = /started (?:ferretdb|mongod) \(pid \d+\) at (mongodb:\/\/\S+),/.exec(started.output())?.[1]
  if (!MONGODB_URI) throw new Error('could not find the embedded MongoDB-wire server in the output')
  return MONGODB_URI
}

/** The process ids of the servers an embedded-default instance started (PostgreSQL's, under FerretDB, are not printed: see cpuSecondsOfAll). */
export function embeddedPids (started: Started): { redis: number, mongo: number } {
  const redis = Number(/started redis-server \(pid (\d+)\)/.exec(started.output())?.[1])
  const mongo = Number(/started (?:ferretdb|mongod) \(pid (\d+)\)/.exec(started.output())?.[1])
  if (!redis || !mongo) throw new Error('could not find the embedded servers\' pids in the output')
  return { redis, mongo }
}

/** Which MongoDB-wire server an instance started (see scripts/embedded.ts mongoEngine). */
export function embeddedEngine (started: Started): string {
  return /started (?:ferretdb|mongod) \(pid \d+\) at mongodb:\/\/\S+, ([\w-]+), /.exec(started.output())?.[1] ?? 'unknown'
}

/** Resident memory of a process, in bytes (Linux). */
export async function rss (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024
}

/** CPU seconds a process has used so far (user + system; Linux). */
export async function cpuSeconds (pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  // utime and stime are fields 14 and 15 of stat, counted here after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** CPU seconds used so far by every process whose command name is `name` (all of PostgreSQL's, say); 0 when none runs. */
export async function cpuSecondsOfAll (name: string): Promise<number> {
  let total = 0
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    // A process may end between the listing and the reads.
    const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '')
    if (comm.trim() === name) total += await cpuSeconds(Number(entry)).catch(() => 0)
  }
  return total
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}
