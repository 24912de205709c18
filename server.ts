// `npm start`: the API server. Without MONGODB_URI / REDIS_URL it starts its
// own servers first (see scripts/embedded.ts) and stops them when it stops.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { provideServers, type EmbeddedEnvironment } from './scripts/embedded.js'
import { loadConfig } from './schemas/config.js'

const say = (message: string): void => { console.log(`[parley] ${message}`) }

/**
 * Under `npm start`, npm is the process that process managers, CI runners and
 * `timeout` signal, and npm does not pass SIGTERM on to its script: it exits
 * and leaves us running. So we stop, gracefully, as soon as our parent is gone.
 * Only under npm: a server started directly keeps running when its shell exits.
 */
function stopWithNpm (): void {
  if (process.env.npm_lifecycle_event === undefined) return
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    say('npm exited; shutting down')
    process.kill(process.pid, 'SIGTERM')
  }, 250)
  timer.unref()
}

let embedded: EmbeddedEnvironment | undefined
try {
  // Fail on bad configuration before starting anything.
  loadConfig({ MONGODB_URI: 'mongodb://placeholder', REDIS_URL: 'redis://placeholder' })
  embedded = await provideServers(process.env, { persistentDir: '.data', log: say })
  const app = await buildApp({ MONGODB_URI: embedded.MONGODB_URI, REDIS_URL: embedded.REDIS_URL })

  closeWithGrace({ delay: 8000, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    const { eventsReceived, eventsDelivered } = app.realtime.stats()
    say(`real time: ${eventsReceived} events received from Redis, ${eventsDelivered} delivered to sockets of their users here`)
    await app.close()
    await embedded?.stop()
  })

  const address = await app.listen({ host: app.config.HOST, port: app.config.PORT })
  say(`listening at ${address} (API docs at ${address}/docs), pid ${process.pid}`)
  stopWithNpm()
} catch (err) {
  console.error(`[parley] cannot start: ${(err as Error).message}`)
  await embedded?.stop()
  process.exit(1)
}
