// `npm test` (after the type check and lint): provides Redis and a MongoDB-wire
// server once for the whole run — the configured ones, or servers started here
// on free loopback ports — then runs tap against them and stops what it started.
//
// Two passes: the whole suite on a single Redis, then every file that uses the
// shared Redis again on a local Redis Cluster (3 primaries, 3 replicas) started
// from the same redis-server binary. TEST_REDIS=single or =cluster runs one pass.
// The first pass runs on the embedded default (FerretDB 1.24 on PostgreSQL
// where PostgreSQL is installed); the cluster pass on FerretDB 1.24 on SQLite,
// so both backends guard the MongoDB 7 / FerretDB common subset. A configured
// MONGODB_URI serves both.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildWebApp } from './build-web.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { ensureChromium, provideServers, startMongo, startRedisCluster, type EmbeddedServer } from './embedded.js'

const say = (message: string): void => { console.log(`[test] ${message}`) }
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const tapBin = join(root, 'node_modules', '.bin', 'tap')
// Files that bring their own Redis (fault tests stop and restart it; the
// failover test kills a node of a cluster of its own), start no app, spawn
// `npm start` with its own servers, or drive the browser (the SDK under it is
// covered on the cluster by sdk.test.ts): nothing more to learn on a cluster.
const singleRedisOnly = new Set(['config.test.ts', 'openapi.test.ts', 'server.test.ts', 'health.test.ts', 'outage.test.ts', 'cluster.test.ts', 'web-app.test.ts'])

const mode = process.env.TEST_REDIS ?? 'both'
if (!['both', 'single', 'cluster'].includes(mode)) throw new Error(`TEST_REDIS must be both, single or cluster (got ${mode})`)
const args = process.argv.slice(2)
const files = args.filter((arg) => arg.endsWith('.ts'))
const options = args.filter((arg) => !arg.endsWith('.ts'))
const clusterFiles = files.length > 0
  ? files.filter((file) => !singleRedisOnly.has(file.split('/').pop()!))
  : readdirSync(join(root, 'test')).filter((file) => file.endsWith('.test.ts') && !singleRedisOnly.has(file)).sort().map((file) => `test/${file}`)

interface Summary { pass: number, fail: number }

async function tap (tapArgs: string[], env: NodeJS.ProcessEnv): Promise<{ code: number, summary?: Summary }> {
  const child = spawn(tapBin, tapArgs, { stdio: ['inherit', 'pipe', 'inherit'], env: { ...process.env, CHROMIUM_PATH, ...env } })
  // tap's own summary is `# { total: N, pass: P, fail: F, ... }`; it is repeated
  // at the end as the plain "P passed, F failed" line that CI systems read.
  let summary: Summary | undefined
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
  const forward = (signal: NodeJS.Signals): void => { child.kill(signal) }
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  const code = await new Promise<number>((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))))
  process.off('SIGINT', forward)
  process.off('SIGTERM', forward)
  return { code, summary }
}

// The browser test drives the built web app in the Debian Chromium.
await buildWebApp()
const CHROMIUM_PATH = await ensureChromium(say)
const servers = await provideServers(process.env, { log: say })
// The MongoDB-wire server started here, if one was (none when MONGODB_URI is configured).
const firstEngine = servers.servers.find((server) => server.engine !== undefined)?.engine
const results: Array<{ pass: string, code: number, summary?: Summary }> = []
try {
  if (mode !== 'cluster') {
    results.push({ pass: `single Redis${firstEngine ? `, ${firstEngine}` : ''}`, ...await tap(args, { MONGODB_URI: servers.MONGODB_URI, REDIS_URL: servers.REDIS_URL, REDIS_CLUSTER_NODES: '' }) })
  }
  if (mode !== 'single' && clusterFiles.length > 0) {
    say(`cluster pass: ${clusterFiles.length} files on a local Redis Cluster`)
    const cluster = await startRedisCluster({ log: say })
    const sqliteDir = firstEngine !== undefined && firstEngine !== 'ferretdb-sqlite' ? await mkdtemp(join(tmpdir(), 'parley-sqlite-')) : undefined
    let sqlite: EmbeddedServer | undefined
    try {
      if (sqliteDir) {
        sqlite = await startMongo({ dataDir: sqliteDir, engine: 'ferretdb-sqlite', log: say })
        say(`cluster pass on ferretdb-sqlite at ${sqlite.url}`)
      }
      // tap keeps one coverage report per run: the second pass would replace the first one's.
      results.push({ pass: `Redis Cluster${sqlite ? ', ferretdb-sqlite' : firstEngine ? `, ${firstEngine}` : ''}`, ...await tap([...options, '--disable-coverage', ...clusterFiles], { MONGODB_URI: sqlite?.url ?? servers.MONGODB_URI, REDIS_URL: `redis://${cluster.nodes.split(',')[0]}`, REDIS_CLUSTER_NODES: cluster.nodes }) })
    } finally {
      await sqlite?.stop()
      if (sqliteDir) await rm(sqliteDir, { recursive: true, force: true })
      await cluster.stop()
    }
  }
} finally {
  await servers.stop()
}
let failed = false
for (const { pass, code, summary } of results) {
  if (summary) console.log(`tests (${pass}): ${summary.pass} passed, ${summary.fail} failed`)
  if (code !== 0) failed = true
}
const total = results.reduce((sum, { summary }) => ({ pass: sum.pass + (summary?.pass ?? 0), fail: sum.fail + (summary?.fail ?? 0) }), { pass: 0, fail: 0 })
console.log(`tests: ${total.pass} passed, ${total.fail} failed`)
process.exit(failed ? 1 : 0)
