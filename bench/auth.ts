// Login throughput against bare argon2 verifications in the same run, and
// /health/live latency alone and while logins saturate the CPU (argon2 runs on
// libuv's thread pool, so the event loop must stay responsive).
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import argon2 from 'argon2'
import { duration, measure, ratio, startParley, type Started } from './lib.js'

const password = 'benchmark password 1'

async function waitForCode (mailDir: string): Promise<string> {
  const deadline = Date.now() + 15000
  while (Date.now() < deadline) {
    const files = await readdir(mailDir).catch(() => [] as string[])
    for (const file of files) {
      const match = /\b(\d{6})\b/.exec((await readFile(join(mailDir, file), 'utf8')).split('\n\n').slice(1).join('\n'))
      if (match) return match[1]!
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error('no registration mail')
}

async function post (parley: Started, path: string, body: unknown): Promise<Response> {
  return fetch(`${parley.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** Verifications per second of argon2 alone, as many in flight as the thread pool runs. */
async function bareArgon2 (seconds: number): Promise<number> {
  const hash = await argon2.hash(password, { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 })
  const inFlight = Number(process.env.UV_THREADPOOL_SIZE ?? 4)
  const end = Date.now() + seconds * 1000
  let done = 0
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (Date.now() < end) {
      await argon2.verify(hash, password)
      done++
    }
  }))
  return Math.round(done / seconds)
}

export async function authScenario (): Promise<Record<string, unknown>> {
  const parley = await startParley({ AUTH_RATE_LIMIT_MAX: '100000000' })
  try {
    const email = 'bench@example.com'
    const started = await post(parley, '/api/auth/register', { email, username: 'bench_user', password })
    if (started.status !== 202) throw new Error(`register: ${started.status} ${await started.text()}`)
    const code = await waitForCode(join(parley.cwd, '.data', 'mail'))
    const verified = await post(parley, '/api/auth/register/verify', { email, code })
    if (verified.status !== 201) throw new Error(`verify: ${verified.status} ${await verified.text()}`)

    const argonPerSecond = await bareArgon2(duration)
    const login = await measure({ url: `${parley.url}/api/auth/login`, method: 'POST', connections: 8, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: email, password }) })
    const liveAlone = await measure({ url: `${parley.url}/health/live`, connections: 4 })
    const [liveUnderLoad, loginUnderLoad] = await Promise.all([
      measure({ url: `${parley.url}/health/live`, connections: 4 }),
      measure({ url: `${parley.url}/api/auth/login`, method: 'POST', connections: 8, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: email, password }) })
    ])
    return {
      baseline: { name: 'bare argon2id verifications/s (m=19456, t=2, p=1), same machine', verificationsPerSecond: argonPerSecond },
      login: { name: 'POST /api/auth/login', ...login },
      ratio: { loginsPerArgon2Verification: ratio(login.requestsPerSecond, argonPerSecond) },
      liveness: {
        alone: { name: 'GET /health/live, 4 connections', ...liveAlone },
        whileLoggingIn: { name: 'GET /health/live, 4 connections, while logins saturate the CPU', ...liveUnderLoad },
        loginsMeanwhile: loginUnderLoad,
        p99Ratio: ratio(liveUnderLoad.latencyP99Ms, Math.max(1, liveAlone.latencyP99Ms))
      }
    }
  } finally {
    await parley.stop()
  }
}
