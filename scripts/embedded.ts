// Starts the servers Parley needs when none were configured: a redis-server and
// a MongoDB-wire server (mongod if installed, otherwise FerretDB on PostgreSQL or SQLite, see mongoEngine), each
// on a free loopback port, each stopped with us — also when we die without
// cleaning up, through a watchdog that outlives us by at most a second.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { access, chmod, chown, constants, mkdir, mkdtemp, readdir, realpath, rm } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const FERRETDB_VERSION = 'v1.24.2'
const here = dirname(fileURLToPath(import.meta.url))
// This file runs from scripts/ (sources) or dist/scripts/ (the build); the
// shell script is only in the former.
const installScript = [join(here, 'install-ferretdb.sh'), resolve(here, '..', '..', 'scripts', 'install-ferretdb.sh')]

export interface EmbeddedServer {
  name: string
  /** For a MongoDB-wire server: which one (see mongoEngine). */
  engine?: MongoEngine
  /** For FerretDB on PostgreSQL: the PostgreSQL it stores in (a Unix socket; psql takes it as is). */
  postgresUrl?: string
  url: string
  port: number
  pid: number
  stop: () => Promise<void>
}

type Log = (message: string) => void

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('could not allocate a port')
  return address.port
}

async function isExecutable (file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

async function firstExisting (files: string[]): Promise<string | undefined> {
  for (const file of files) {
    try {
      await access(file, constants.R_OK)
      return file
    } catch {}
  }
  return undefined
}

async function which (command: string, extraDirs: string[] = []): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...extraDirs].filter(Boolean)
  for (const dir of dirs) {
    const candidate = join(dir, command)
    if (await isExecutable(candidate)) return candidate
  }
  return undefined
}

function goBinDirs (): string[] {
  const dirs: string[] = []
  if (process.env.GOBIN) dirs.push(process.env.GOBIN)
  const goPath = spawnSync('go', ['env', 'GOPATH'], { encoding: 'utf8' })
  if (goPath.status === 0 && goPath.stdout.trim() !== '') dirs.push(join(goPath.stdout.trim().split(delimiter)[0]!, 'bin'))
  if (process.env.HOME) dirs.push(join(process.env.HOME, 'go', 'bin'))
  return dirs
}

function run (command: string, args: string[], log: Log): boolean {
  log(`$ ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  return result.status === 0
}

/** The command, installed from the Debian packages first if it is missing and we may (root, apt-get). */
async function fromDebian (command: string, pkg: string, log: Log): Promise<string | undefined> {
  const found = await which(command)
  if (found) return found
  const isRoot = process.getuid?.() === 0
  if (!isRoot || !await which('apt-get')) return undefined
  log(`${command} not found: installing ${pkg} from the Debian packages`)
  if (!run('apt-get', ['install', '-y', '-qq', pkg], log)) {
    run('apt-get', ['update', '-qq'], log)
    run('apt-get', ['install', '-y', '-qq', pkg], log)
  }
  return which(command)
}

async function ensureRedisServer (log: Log): Promise<string> {
  const found = await fromDebian('redis-server', 'redis-server', log)
  if (found) return found
  throw new Error('redis-server is not installed. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`), ' +
    'set REDIS_URL to a running Redis, or run `docker compose up`.')
}

/**
 * The Chromium the browser tests drive (CHROMIUM_PATH, or the Debian package,
 * installed when missing). Never a browser build downloaded from a vendor.
 */
export async function ensureChromium (log: Log = () => {}): Promise<string> {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH
  let found: string | undefined
  for (const command of ['chromium', 'chromium-browser']) found ??= await which(command)
  found ??= await fromDebian('chromium', 'chromium', log)
  if (!found) throw new Error('Chromium is not installed. Install it (Debian/Ubuntu: `sudo apt-get install chromium`) or set CHROMIUM_PATH.')
  // Without a colour emoji font, reactions show as empty boxes in the screenshots.
  const emoji = spawnSync('fc-list', [':charset=1f44d'], { encoding: 'utf8' })
  if (emoji.status === 0 && emoji.stdout.trim() === '' && process.getuid?.() === 0 && await which('apt-get')) {
    run('apt-get', ['install', '-y', '-qq', 'fonts-noto-color-emoji'], log)
  }
  return found
}

async function ensureFerretDb (log: Log): Promise<string> {
  const found = await which('ferretdb', goBinDirs())
  if (found) return found
  if (!await which('go')) {
    throw new Error('No MongoDB-wire server found: neither `mongod` nor `ferretdb` is installed, and Go is not available to build FerretDB. ' +
      `Install MongoDB 7, or Go and then \`go install github.com/FerretDB/FerretDB/cmd/ferretdb@${FERRETDB_VERSION}\`, ` +
      'set MONGODB_URI to a running server, or run `docker compose up`.')
  }
  log(`ferretdb not found: building FerretDB ${FERRETDB_VERSION} with the Go toolchain (a minute or two, once)`)
  const script = await firstExisting(installScript)
  if (!script || !run('bash', [script, FERRETDB_VERSION], log)) {
    throw new Error('Building FerretDB failed (see the output above). Install MongoDB 7 or FerretDB 1.24 yourself, set MONGODB_URI, or run `docker compose up`.')
  }
  const installed = await which('ferretdb', goBinDirs())
  if (!installed) throw new Error('FerretDB was built but the ferretdb binary is not in GOBIN / GOPATH/bin')
  return installed
}

// Kills `child` if this process goes away without stopping it (SIGKILL, crash).
function watchdog (child: ChildProcess): ChildProcess {
  const script = `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${child.pid} 2>/dev/null; do sleep 1; done; kill -TERM ${child.pid} 2>/dev/null; sleep 5; kill -KILL ${child.pid} 2>/dev/null; exit 0`
  const dog = spawn('sh', ['-c', script], { stdio: 'ignore', detached: true })
  dog.unref()
  return dog
}

async function waitFor (check: () => Promise<boolean>, child: ChildProcess, name: string, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  // Checks before it looks at the clock: a synchronous install of another
  // server (apt-get, go build) can hold this event loop past the deadline
  // while this one was ready all along.
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited during start-up (code ${child.exitCode ?? child.signalCode}):\n${output()}`)
    }
    if (await check()) return
    if (Date.now() >= deadline) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  child.kill('SIGKILL')
  throw new Error(`${name} did not become ready within ${timeoutMs} ms:\n${output()}`)
}

function tcpProbe (port: number, payload: string | undefined, expect: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' })
    let data = ''
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(1000, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => {
      if (payload === undefined) return done(true)
      socket.write(payload)
    })
    socket.on('data', (chunk) => {
      data += chunk.toString()
      if (expect !== undefined && data.includes(expect)) done(true)
    })
  })
}

function startProcess (name: string, command: string, args: string[], port: number, url: string, ready: () => Promise<boolean>, timeoutMs: number, spawnAs: { uid?: number, gid?: number, cwd?: string } = {}): Promise<EmbeddedServer> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnAs })
  let output = ''
  const collect = (chunk: Buffer): void => { output = (output + chunk.toString()).slice(-8000) }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const dog = watchdog(child)

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit')
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      }
      try { process.kill(dog.pid!, 'SIGKILL') } catch { /* the watchdog already left */ }
    })()
    return stopping
  }

  return waitFor(ready, child, name, () => output, timeoutMs)
    .then(() => ({ name, url, port, pid: child.pid!, stop }))
    .catch(async (err: unknown) => { await stop(); throw err })
}

export interface RedisOptions {
  dataDir?: string
  port?: number
  log?: Log
}

export async function startRedis ({ dataDir, port, log = () => {} }: RedisOptions = {}): Promise<EmbeddedServer> {
  const binary = await ensureRedisServer(log)
  const listenPort = port ?? await freePort()
  const args = ['--port', String(listenPort), '--bind', '127.0.0.1', '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning']
  if (dataDir) {
    await mkdir(dataDir, { recursive: true })
    args.push('--dir', dataDir, '--appendonly', 'yes', '--save', '')
  } else {
    args.push('--save', '', '--appendonly', 'no')
  }
  return startProcess('redis-server', binary, args, listenPort, `redis://127.0.0.1:${listenPort}`,
    () => tcpProbe(listenPort, 'PING\r\n', '+PONG'), 15000)
}

export interface RedisCluster {
  /** Seed nodes, host:port, comma-separated (REDIS_CLUSTER_NODES). */
  nodes: string
  /** Every node, primaries first as created (each primary's replica follows the primaries). */
  servers: EmbeddedServer[]
  stop: () => Promise<void>
}

/**
 * A local Redis Cluster from the same redis-server binary: `primaries`
 * primaries with one replica each, on free loopback ports, created with
 * `redis-cli --cluster create`. A node that stops is failed over within a few
 * seconds (node timeout 1 s). Data in a temp dir, removed on stop.
 */
export async function startRedisCluster ({ primaries = 3, log = () => {} }: { primaries?: number, log?: Log } = {}): Promise<RedisCluster> {
  const binary = await ensureRedisServer(log)
  const cli = join(dirname(binary), 'redis-cli')
  const dir = await mkdtemp(join(tmpdir(), 'parley-cluster-'))
  const servers: EmbeddedServer[] = []
  const stop = async (): Promise<void> => {
    await Promise.allSettled(servers.map((s) => s.stop()))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const ports: number[] = []
    while (ports.length < primaries * 2) {
      const port = await freePort()
      if (!ports.includes(port)) ports.push(port)
    }
    const started = await Promise.allSettled(ports.map(async (port) => {
      const nodeDir = join(dir, String(port))
      await mkdir(nodeDir, { recursive: true })
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning',
        '--dir', nodeDir, '--save', '', '--appendonly', 'no',
        '--cluster-enabled', 'yes', '--cluster-config-file', join(nodeDir, 'nodes.conf'), '--cluster-node-timeout', '1000',
        // The slots of a failed primary are out of service until its replica
        // takes over; the other shards keep serving meanwhile.
        '--cluster-require-full-coverage', 'no',
        // A replica can take over only once it has synced; the default waits 5 s before the first sync.
        '--repl-diskless-sync-delay', '0']
      return startProcess(`redis-server:${port}`, binary, args, port, `redis://127.0.0.1:${port}`, () => tcpProbe(port, 'PING\r\n', '+PONG'), 15000)
    }))
    for (const result of started) if (result.status === 'fulfilled') servers.push(result.value)
    for (const result of started) if (result.status === 'rejected') throw result.reason
    const create = spawnSync(cli, ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '1', '--cluster-yes'], { encoding: 'utf8' })
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.stdout}${create.stderr}`)
    // Ready when every node sees the whole cluster and every replica has synced
    // with its primary (before that it could not take over).
    const deadline = Date.now() + 30000
    for (;;) {
      const states = ports.map((port) => spawnSync(cli, ['-p', String(port), 'cluster', 'info'], { encoding: 'utf8' }).stdout)
      const replication = ports.map((port) => spawnSync(cli, ['-p', String(port), 'info', 'replication'], { encoding: 'utf8' }).stdout)
      const replicated = replication.filter((info) => info.includes('role:slave')).length === primaries &&
        replication.every((info) => !info.includes('role:slave') || info.includes('master_link_status:up'))
      if (replicated && states.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${ports.length}`))) break
      if (Date.now() > deadline) throw new Error(`the Redis Cluster did not become ready:\n${states.join('\n')}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    log(`started a Redis Cluster of ${primaries} primaries and ${primaries} replicas on ports ${ports.join(', ')}`)
    return { nodes: ports.map((port) => `127.0.0.1:${port}`).join(','), servers, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

export interface MongoOptions {
  dataDir: string
  port?: number
  log?: Log
  /** Which server to start (default: EMBEDDED_MONGO, else see mongoEngine). */
  engine?: MongoEngine
}

/** The MongoDB-wire servers this file can start. */
export const mongoEngines = ['mongod', 'ferretdb-postgresql', 'ferretdb-sqlite'] as const
export type MongoEngine = typeof mongoEngines[number]

/** The PostgreSQL server programs (initdb, postgres): on PATH, else Debian's versioned folder, newest first. */
async function postgresBinDir (): Promise<string | undefined> {
  const onPath = await which('initdb')
  if (onPath && await which('postgres')) return dirname(await realpath(onPath))
  const versions = await readdir('/usr/lib/postgresql').catch(() => [] as string[])
  for (const version of versions.sort((a, b) => Number(b) - Number(a))) {
    const dir = join('/usr/lib/postgresql', version, 'bin')
    if (await isExecutable(join(dir, 'initdb')) && await isExecutable(join(dir, 'postgres'))) return dir
  }
  return undefined
}

/**
 * The server `startMongo` runs: EMBEDDED_MONGO when set; else mongod when
 * installed; else FerretDB 1.24, on PostgreSQL when its server programs are
 * installed (Debian's `postgresql`), otherwise on SQLite. A data folder that
 * already holds one FerretDB backend's files keeps that backend, so an
 * upgrade never leaves `npm start`'s data behind.
 */
export async function mongoEngine (dataDir?: string, env: NodeJS.ProcessEnv = process.env): Promise<MongoEngine> {
  const wanted = env.EMBEDDED_MONGO
  if (wanted) {
    if (!(mongoEngines as readonly string[]).includes(wanted)) throw new Error(`EMBEDDED_MONGO must be one of ${mongoEngines.join(', ')} (got ${wanted})`)
    return wanted as MongoEngine
  }
  if (await which('mongod')) return 'mongod'
  const holds = async (folder: string): Promise<boolean> => dataDir !== undefined && await access(join(dataDir, folder)).then(() => true, () => false)
  if (await holds('ferretdb') && !await holds('postgres')) return 'ferretdb-sqlite'
  if (!await postgresBinDir()) return 'ferretdb-sqlite'
  return dataDir === undefined || await postgresCanReach(join(dataDir, 'postgres')) ? 'ferretdb-postgresql' : 'ferretdb-sqlite'
}

/** Whether the account PostgreSQL runs as can get to `dir` (it need only pass through the folders above it). */
async function postgresCanReach (dir: string): Promise<boolean> {
  const account = postgresAccount()
  if (!account) return true
  let existing = resolve(dir)
  while (!await access(existing).then(() => true, () => false)) existing = dirname(existing)
  return spawnSync('test', ['-x', existing], { uid: account.uid, gid: account.gid }).status === 0
}

/** The account PostgreSQL runs as: it refuses to run as root. Looked up once per process. */
let postgresAccountFound: { uid: number, gid: number } | undefined | null = null
function postgresAccount (): { uid: number, gid: number } | undefined {
  if (postgresAccountFound !== null) return postgresAccountFound
  if (process.getuid?.() !== 0) return (postgresAccountFound = undefined)
  for (const name of ['postgres', 'nobody']) {
    const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' })
    const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' })
    if (uid.status === 0 && gid.status === 0) return (postgresAccountFound = { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) })
  }
  throw new Error('PostgreSQL refuses to run as root and there is no postgres or nobody account to run it as; set EMBEDDED_MONGO=ferretdb-sqlite')
}

function socketProbe (path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path })
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(1000, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => done(true))
  })
}

/**
 * FerretDB 1.24 hands an equality on a top-level field to PostgreSQL as
 * `_jsonb -> $1 @> $2` (JSON containment, the key a parameter), and builds its
 * indexes as b-trees on `_jsonb -> 'field'`, which cannot serve containment:
 * every such query, `_id` lookups included, scanned the whole table. So, for
 * each field FerretDB indexes first, this adds a GIN index on the same
 * expression, which can — for indexes to come (an event trigger on FerretDB's
 * CREATE INDEX) and for those already there. With the key a parameter, only a
 * plan made for the actual values matches an expression index, hence
 * `plan_cache_mode=force_custom_plan` on the server. Results are the same
 * (PostgreSQL rechecks every row the index finds), FerretDB does not see these
 * indexes, and dropping a collection drops them with its table.
 */
const CONTAINMENT_INDEXES_SQL = `
CREATE OR REPLACE FUNCTION parley_containment_index(tbl regclass, expr text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  field text := substring(expr from '^\\(\\(_jsonb -> ''([^'']+)''::text\\)\\)$');
  tbl_name text := (SELECT relname FROM pg_class WHERE oid = tbl);
BEGIN
  IF field IS NULL OR tbl_name LIKE '\\_ferretdb\\_%' THEN RETURN; END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L) jsonb_path_ops) WITH (fastupdate = off)',
    'parley_gin_' || substr(md5(tbl::text || '|' || field), 1, 16), tbl, field);
END $$;
CREATE OR REPLACE FUNCTION parley_containment_indexes() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT i.indrelid::regclass AS tbl, pg_get_indexdef(i.indexrelid, 1, false) AS expr
    FROM pg_event_trigger_ddl_commands() c
    JOIN pg_index i ON i.indexrelid = c.objid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    WHERE c.command_tag = 'CREATE INDEX' AND am.amname = 'btree'
  LOOP
    PERFORM parley_containment_index(r.tbl, r.expr);
  END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS parley_containment_indexes;
CREATE EVENT TRIGGER parley_containment_indexes ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION parley_containment_indexes();
SELECT parley_containment_index(i.indrelid::regclass, pg_get_indexdef(i.indexrelid, 1, false))
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
  JOIN pg_namespace n ON n.oid = ic.relnamespace
  WHERE am.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast');
`

/** Runs SQL on the embedded PostgreSQL as its account, through psql on its socket. */
async function runPsql (bin: string, socketDir: string, sql: string, asAccount: { uid?: number, gid?: number }): Promise<void> {
  const psql = spawn(join(bin, 'psql'), ['-h', socketDir, '-U', 'parley', '-d', 'postgres', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'], ...asAccount })
  let output = ''
  psql.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  psql.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  psql.stdin.end(sql)
  const [code] = await once(psql, 'close') as [number | null]
  if (code !== 0) throw new Error(`psql failed (code ${code}):\n${output}`)
}

/**
 * A PostgreSQL server for FerretDB: its cluster in `<dataDir>/postgres`
 * (created on first start), listening only on a Unix socket in a fresh
 * folder of its own, which only its account (and root) may enter: that is
 * what makes `trust` authentication safe here. Durable as PostgreSQL is by
 * default (fsync, synchronous commits): an acknowledged message survives a
 * crash of any process.
 */
async function startPostgres (dataDirGiven: string, log: Log): Promise<EmbeddedServer> {
  const dataDir = resolve(dataDirGiven)
  const bin = await postgresBinDir()
  if (!bin) throw new Error('PostgreSQL is not installed (Debian/Ubuntu: `sudo apt-get install postgresql`); set EMBEDDED_MONGO=ferretdb-sqlite to use SQLite')
  const account = postgresAccount()
  const asAccount = account ? { uid: account.uid, gid: account.gid } : {}
  const cluster = join(dataDir, 'postgres')
  if (!await postgresCanReach(cluster)) throw new Error(`PostgreSQL runs as uid ${account?.uid} and cannot reach ${cluster}; set EMBEDDED_MONGO=ferretdb-sqlite or use a data folder it can reach`)
  if (!await access(join(cluster, 'PG_VERSION')).then(() => true, () => false)) {
    await mkdir(cluster, { recursive: true })
    if (account) await chown(cluster, account.uid, account.gid)
    log(`creating a PostgreSQL cluster in ${cluster}`)
    const init = spawnSync(join(bin, 'initdb'), ['-D', cluster, '-U', 'parley', '--auth=trust', '-E', 'UTF8', '--locale=C'], { encoding: 'utf8', cwd: cluster, ...asAccount })
    if (init.status !== 0) throw new Error(`initdb failed:\n${init.stdout}${init.stderr}`)
  }
  // A short path of its own: a Unix socket's path is limited to ~100 bytes.
  const socketDir = await mkdtemp(join(tmpdir(), 'parley-pg-'))
  const removeSocketDir = (): Promise<void> => rm(socketDir, { recursive: true, force: true })
  try {
    if (account) await chown(socketDir, account.uid, account.gid)
    const server = await startProcess('postgres', join(bin, 'postgres'), [
      '-D', cluster, '-k', socketDir, '-c', 'listen_addresses=', '-c', 'max_connections=200', '-c', 'plan_cache_mode=force_custom_plan'
    ], 0, `postgres://parley@/postgres?host=${socketDir}`, () => socketProbe(join(socketDir, '.s.PGSQL.5432')), 30000, { ...asAccount, cwd: cluster })
    try {
      await runPsql(bin, socketDir, CONTAINMENT_INDEXES_SQL, asAccount)
    } catch (err) {
      await server.stop()
      throw err
    }
    return { ...server, stop: async () => { await server.stop(); await removeSocketDir() } }
  } catch (err) {
    await removeSocketDir()
    throw err
  }
}

export async function startMongo ({ dataDir, port: wantedPort, log = () => {}, engine: wantedEngine }: MongoOptions): Promise<EmbeddedServer> {
  const port = wantedPort ?? await freePort()
  const url = `mongodb://127.0.0.1:${port}/`
  const engine = wantedEngine ?? await mongoEngine(dataDir)
  if (engine === 'mongod') {
    const mongod = await which('mongod')
    if (!mongod) throw new Error('EMBEDDED_MONGO=mongod, but mongod is not installed')
    const dbPath = join(dataDir, 'mongod')
    await mkdir(dbPath, { recursive: true })
    const server = await startProcess('mongod', mongod, ['--port', String(port), '--bind_ip', '127.0.0.1', '--dbpath', dbPath, '--quiet'],
      port, url, () => tcpProbe(port, undefined, undefined), 60000)
    return { ...server, engine }
  }
  const ferretdb = await ensureFerretDb(log)
  const stateDir = join(dataDir, 'ferretdb-state')
  await mkdir(stateDir, { recursive: true })
  const common = [`--state-dir=${stateDir}`, `--listen-addr=127.0.0.1:${port}`, '--telemetry=disable', '--debug-addr=-', '--log-level=warn']
  if (engine === 'ferretdb-sqlite') {
    const sqliteDir = join(dataDir, 'ferretdb')
    await mkdir(sqliteDir, { recursive: true })
    // WAL with synchronous=NORMAL: a crash of any process loses nothing; only an
    // OS crash or power cut could lose the last commits. This is the laptop and
    // test server; production runs MongoDB with its own journal.
    const server = await startProcess('ferretdb', ferretdb, ['--handler=sqlite', `--sqlite-url=file:${sqliteDir}/?_pragma=synchronous(normal)`, ...common],
      port, url, () => tcpProbe(port, undefined, undefined), 30000)
    return { ...server, engine }
  }
  const postgres = await startPostgres(dataDir, log)
  try {
    const server = await startProcess('ferretdb', ferretdb, ['--handler=postgresql', `--postgresql-url=${postgres.url}`, ...common],
      port, url, () => tcpProbe(port, undefined, undefined), 30000)
    // FerretDB first: PostgreSQL then shuts down with no client left.
    return { ...server, engine, postgresUrl: postgres.url, stop: async () => { await server.stop(); await postgres.stop() } }
  } catch (err) {
    await postgres.stop()
    throw err
  }
}

export interface EmbeddedEnvironment {
  MONGODB_URI: string
  REDIS_URL: string
  servers: EmbeddedServer[]
  stop: () => Promise<void>
}

/**
 * Provides MONGODB_URI and REDIS_URL: the ones in `env` when set, otherwise
 * servers started here. `persistentDir` keeps data (npm start); without it a
 * temp dir is used and removed on stop (tests).
 */
export async function provideServers (env: NodeJS.ProcessEnv, { persistentDir, log = () => {} }: { persistentDir?: string, log?: Log } = {}): Promise<EmbeddedEnvironment> {
  const servers: EmbeddedServer[] = []
  const baseDir = persistentDir ?? await mkdtemp(join(tmpdir(), 'parley-'))
  // mkdtemp makes a folder only its owner may enter; an embedded PostgreSQL runs as an account of its own.
  if (!persistentDir) await chmod(baseDir, 0o711)
  const stop = async (): Promise<void> => {
    await Promise.allSettled(servers.map((s) => s.stop()))
    if (!persistentDir) await rm(baseDir, { recursive: true, force: true })
  }
  try {
    // A configured Redis Cluster needs no local Redis: its first seed stands for REDIS_URL.
    const clusterSeed = env.REDIS_CLUSTER_NODES?.split(',')[0]
    let redisUrl = env.REDIS_URL || (clusterSeed ? `redis://${clusterSeed}` : undefined)
    let mongoUri = env.MONGODB_URI
    const started = Date.now()
    const [redisResult, mongoResult] = await Promise.allSettled([
      redisUrl ? undefined : startRedis({ dataDir: persistentDir ? join(baseDir, 'redis') : undefined, log }),
      mongoUri ? undefined : startMongo({ dataDir: baseDir, log })
    ])
    // Keep whatever did start before reporting a failure, so stop() can end it.
    for (const result of [redisResult, mongoResult]) {
      if (result.status === 'fulfilled' && result.value) servers.push(result.value)
    }
    for (const result of [redisResult, mongoResult]) {
      if (result.status === 'rejected') throw result.reason
    }
    const redis = redisResult.status === 'fulfilled' ? redisResult.value : undefined
    const mongo = mongoResult.status === 'fulfilled' ? mongoResult.value : undefined
    for (const server of servers) log(`started ${server.name} (pid ${server.pid}) at ${server.url}, ${server.engine ? `${server.engine}, ` : ''}data in ${baseDir}`)
    if (servers.length > 0) log(`embedded servers ready in ${Date.now() - started} ms`)
    redisUrl ??= redis!.url
    mongoUri ??= mongo!.url
    return { MONGODB_URI: mongoUri, REDIS_URL: redisUrl, servers, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
