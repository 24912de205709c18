// A real SMTP server in-process for tests: records what it receives and can be
// told to refuse deliveries (to exercise retries).
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'

export interface ReceivedMail {
  to: string[]
  raw: string
}

export interface TestSmtp {
  url: string
  received: ReceivedMail[]
  /** Refuse the next `n` deliveries with a temporary failure. */
  failNext: (n: number) => void
  attempts: () => number
  waitFor: (predicate: (mail: ReceivedMail) => boolean, timeoutMs?: number) => Promise<ReceivedMail>
  close: () => Promise<void>
}

export async function startSmtp (): Promise<TestSmtp> {
  const received: ReceivedMail[] = []
  let failures = 0
  let attempts = 0
  const waiters = new Set<() => void>()
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData (stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => {
        attempts++
        if (failures > 0) {
          failures--
          const err = Object.assign(new Error('Try again later'), { responseCode: 451 })
          return callback(err)
        }
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') })
        for (const wake of waiters) wake()
        callback()
      })
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server.server, 'listening')
  const { port } = server.server.address() as AddressInfo

  return {
    url: `smtp://127.0.0.1:${port}?ignoreTLS=true`,
    received,
    failNext: (n) => { failures = n },
    attempts: () => attempts,
    waitFor: (predicate, timeoutMs = 10000) => new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = received.find(predicate)
        if (found) { cleanup(); resolve(found) }
        return found !== undefined
      }
      const timer = setTimeout(() => { cleanup(); reject(new Error('no matching mail arrived in time')) }, timeoutMs)
      const cleanup = (): void => { clearTimeout(timer); waiters.delete(wake) }
      const wake = (): void => { check() }
      if (!check()) waiters.add(wake)
    }),
    close: () => new Promise((resolve) => server.close(() => resolve()))
  }
}

/** The 6-digit code in a mail (plain digits survive quoted-printable untouched). */
export function codeIn (mail: ReceivedMail): string {
  const match = /\b(\d{6})\b/.exec(mail.raw.split(/\r?\n\r?\n/).slice(1).join('\n'))
  if (!match) throw new Error('no code in mail')
  return match[1]!
}
