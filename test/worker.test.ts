// `npm run worker`: the email, push and webhook workers as their own process,
// with the API (EMAIL_WORKER=false, EVENT_WORKER=false) only queueing.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build, testServers } from './helper.js'
import { startSmtp } from './smtp.js'
import { createServer } from 'node:http'
import { createUser } from './accounts.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

t.test('the standalone worker sends the mail and webhooks the API queued, and stops cleanly on SIGTERM', async (t) => {
  const smtp = await startSmtp()
  t.teardown(smtp.close)
  const hooked: string[] = []
  const receiver = createServer((request, response) => {
    let body = ''
    request.on('data', (c: Buffer) => { body += c.toString() })
    request.on('end', () => { hooked.push(body); response.writeHead(204).end() })
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { receiver.closeAllConnections(); receiver.close() })
  const app = await build(t, { EMAIL_WORKER: false, EVENT_WORKER: false, SMTP_URL: smtp.url, OUTBOUND_ALLOWED_ADDRESSES: '127.0.0.1' })
  t.equal(app.mailer.worker, undefined, 'no worker inside the API')
  const { MONGODB_URI, REDIS_URL } = await testServers()
  const worker = spawn(process.execPath, ['--import', pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href, join(root, 'worker.ts')], {
    env: { ...process.env, MONGODB_URI, REDIS_URL, MONGODB_DB: app.config.MONGODB_DB, REDIS_PREFIX: app.config.REDIS_PREFIX, SMTP_URL: smtp.url, OUTBOUND_ALLOWED_ADDRESSES: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (worker.exitCode === null) worker.kill('SIGKILL') })

  await app.mailer.enqueue('standalone-1', { to: 'worker@example.com', subject: 'From the worker', text: 'queued by the API', html: '<p>queued by the API</p>' })
  const mail = await smtp.waitFor((m) => m.to.includes('worker@example.com'), 20000)
  t.match(mail.raw, /Subject: From the worker/)

  const [ada, bob] = [await createUser(app), await createUser(app)]
  const direct = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'direct', userId: bob.id } })).json().id as string
  const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`
  t.equal((await app.inject({ method: 'POST', url: `/api/conversations/${direct}/webhooks`, headers: ada.auth, payload: { url } })).statusCode, 201)
  await app.inject({ method: 'POST', url: `/api/conversations/${direct}/messages`, headers: bob.auth, payload: { clientMsgId: 'w1', text: 'via the worker' } })
  for (let i = 0; i < 200 && hooked.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(hooked.length, 1, 'the standalone worker delivered the webhook')
  t.equal(JSON.parse(hooked[0] ?? '{}').data?.message?.text, 'via the worker')

  const exited = once(worker, 'exit')
  worker.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0)
})
