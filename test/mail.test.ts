import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { build } from './helper.js'
import { startSmtp } from './smtp.js'

const mail = { to: 'ada@example.com', subject: 'Hello', text: 'plain body', html: '<p>html body</p>' }

t.test('a queued mail is delivered by the worker to a real SMTP server', async (t) => {
  const smtp = await startSmtp()
  t.teardown(smtp.close)
  const app = await build(t, { SMTP_URL: smtp.url })

  await app.mailer.enqueue('test-delivery-1', mail)
  const received = await smtp.waitFor((m) => m.to.includes('ada@example.com'))
  t.match(received.raw, /Subject: Hello/)
  t.match(received.raw, /plain body/)
  t.match(received.raw, /html body/)
  t.match(received.raw, /From: Parley <no-reply@parley.local>/)
})

t.test('a failed delivery is retried with backoff until it goes through', async (t) => {
  const smtp = await startSmtp()
  t.teardown(smtp.close)
  const app = await build(t, { SMTP_URL: smtp.url, EMAIL_ATTEMPTS: 5, EMAIL_BACKOFF_MS: 50 })

  smtp.failNext(2)
  await app.mailer.enqueue('test-retry-1', { ...mail, to: 'retry@example.com' })
  await smtp.waitFor((m) => m.to.includes('retry@example.com'))
  t.equal(smtp.attempts(), 3, 'two refused attempts, then the delivery')
  t.equal(smtp.received.length, 1, 'delivered once')
})

t.test('the same job id is sent once, even when queued twice', async (t) => {
  const smtp = await startSmtp()
  t.teardown(smtp.close)
  const app = await build(t, { SMTP_URL: smtp.url })

  await app.mailer.enqueue('test-once-1', { ...mail, to: 'once@example.com' })
  await smtp.waitFor((m) => m.to.includes('once@example.com'))
  // Queued again after it completed (removed from the queue): the sent-marker stops it.
  await app.mailer.enqueue('test-once-1', { ...mail, to: 'once@example.com' })
  await app.mailer.enqueue('test-once-2', { ...mail, to: 'sentinel@example.com' })
  await smtp.waitFor((m) => m.to.includes('sentinel@example.com'))
  t.equal(smtp.received.filter((m) => m.to.includes('once@example.com')).length, 1)
})

t.test('without SMTP_URL mail is captured as .eml files', async (t) => {
  const app = await build(t)
  await app.mailer.enqueue('test-capture-1', { ...mail, to: 'capture@example.com' })
  const dir = app.config.MAIL_CAPTURE_DIR
  const deadline = Date.now() + 10000
  let files: string[] = []
  while (Date.now() < deadline) {
    files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.eml'))
    if (files.length > 0) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(files.length, 1)
  const eml = await readFile(`${dir}/${files[0]}`, 'utf8')
  t.match(eml, /To: capture@example.com/)
})
