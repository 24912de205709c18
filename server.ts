// `npm start`: the API server. Without MONGODB_URI / REDIS_URL it starts its
// own servers first (see scripts/embedded.ts) and stops them when it stops.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { provideServers, type EmbeddedEnvironment } from './scripts/embedded.js'
import { loadConfig } from './schemas/config.js'

const say = (message: string): void => { console.log(`[parley] ${message}`) }

let embedded: EmbeddedEnvironment | undefined
try {
  // Fail on bad configuration before starting anything.
  loadConfig({ MONGODB_URI: 'mongodb://placeholder', REDIS_URL: 'redis://placeholder' })
  embedded = await provideServers(process.env, { persistentDir: '.data', log: say })
  const app = await buildApp({ MONGODB_URI: embedded.MONGODB_URI, REDIS_URL: embedded.REDIS_URL })

  closeWithGrace({ delay: 8000, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
    await embedded?.stop()
  })

  const address = await app.listen({ host: app.config.HOST, port: app.config.PORT })
  say(`listening at ${address} (API docs at ${address}/docs)`)
} catch (err) {
  console.error(`[parley] cannot start: ${(err as Error).message}`)
  await embedded?.stop()
  process.exit(1)
}
