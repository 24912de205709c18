// `npm start` as an operator sees it: the real server.ts in its own process,
// with no MONGODB_URI / REDIS_URL, so it starts its own servers; SIGTERM must
// end it cleanly, quickly and without leaving a child behind.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('server starts its own servers, is ready, and exits 0 on SIGTERM leaving no child', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'parley-start-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', LOG_LEVEL: 'info', NODE_ENV: 'development' }
  delete env.MONGODB_URI
  delete env.REDIS_URL

  const child = spawn(process.execPath, ['--import', pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href, join(root, 'server.ts')], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })

  const deadline = Date.now() + 60000
  let address: string | undefined
  while (Date.now() < deadline && address === undefined) {
    address = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
    if (child.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (address === undefined) throw new Error(`server did not start:\n${output}`)

  t.match(output, /started redis-server \(pid \d+\)/, 'says it started redis-server')
  t.match(output, /started (ferretdb|mongod) \(pid \d+\)/, 'says it started a MongoDB-wire server')
  t.match(output, /embedded servers ready in \d+ ms/, 'says how long it took')
  const pids = [...output.matchAll(/started \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1]))
  t.equal(pids.length, 2)

  const ready = await fetch(`${address}/health/ready`)
  t.equal(ready.status, 200)

  const started = Date.now()
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0, 'exit code 0')
  t.ok(Date.now() - started < 10000, 'exits within 10 s')
  for (const pid of pids) t.notOk(alive(pid), `child ${pid} is gone`)
})

// Process managers, CI runners and `timeout npm start` signal the npm process,
// in its own session as `setsid npm start` has it. Everything npm start
// started must be gone within the shutdown grace (8 s).
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`npm start, ${signal} to the npm process: the server and its servers stop`, async (t) => {
    const cwd = await mkdtemp(join(tmpdir(), 'parley-npm-start-'))
    t.teardown(() => rm(cwd, { recursive: true, force: true }))
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', LOG_LEVEL: 'warn', NODE_ENV: 'development' }
    delete env.MONGODB_URI
    delete env.REDIS_URL
    // Data of this run under its own folder: run the npm script with the repository as prefix.
    const npm = spawn('npm', ['start', '--silent', '--prefix', root], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let output = ''
    npm.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    npm.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const survivors = (): number[] => [...output.matchAll(/\(pid (\d+)\)|, pid (\d+)/g)].map((m) => Number(m[1] ?? m[2])).filter(alive)
    t.teardown(() => { for (const pid of [npm.pid!, ...survivors()]) { try { process.kill(pid, 'SIGKILL') } catch {} } })

    const deadline = Date.now() + 120000
    let serverPid: number | undefined
    while (Date.now() < deadline && serverPid === undefined && npm.exitCode === null) {
      serverPid = Number(/\[parley\] listening at \S+ .*, pid (\d+)/.exec(output)?.[1]) || undefined
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    if (serverPid === undefined) throw new Error(`npm start did not start the server:\n${output}`)
    const started = survivors()
    t.equal(started.length, 3, 'the server, redis-server and the MongoDB-wire server run')
    t.ok(started.includes(serverPid))

    process.kill(npm.pid!, signal)
    const stopDeadline = Date.now() + 8000
    while (Date.now() < stopDeadline && survivors().length > 0) await new Promise((resolve) => setTimeout(resolve, 100))
    t.same(survivors(), [], `nothing survives ${signal} to npm within the 8 s grace`)
  })
}
