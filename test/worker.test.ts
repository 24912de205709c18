// `npm run worker`: the email worker as its own process, with the API
// (EMAIL_WORKER=false) only queueing.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build, testServers } from './helper.js'
import { startSmtp } from './smtp.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

t.test('the standalone worker sends what the API queued, and stops cleanly on SIGTERM', async (t) => {
  const smtp = await startSmtp()
  t.teardown(smtp.close)
  const app = await build(t, { EMAIL_WORKER: false, SMTP_URL: smtp.url })
  t.equal(app.mailer.worker, undefined, 'no worker inside the API')
  const { MONGODB_URI, REDIS_URL } = await testServers()
  const worker = spawn(process.execPath, ['--import', pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href, join(root, 'worker.ts')], {
    env: { ...process.env, MONGODB_URI, REDIS_URL, REDIS_PREFIX: app.config.REDIS_PREFIX, SMTP_URL: smtp.url, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (worker.exitCode === null) worker.kill('SIGKILL') })

  await app.mailer.enqueue('standalone-1', { to: 'worker@example.com', subject: 'From the worker', text: 'queued by the API', html: '<p>queued by the API</p>' })
  const mail = await smtp.waitFor((m) => m.to.includes('worker@example.com'), 20000)
  t.match(mail.raw, /Subject: From the worker/)

  const exited = once(worker, 'exit')
  worker.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0)
})
