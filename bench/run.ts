// `npm run bench [scenario…]`: each scenario measures Parley next to a bare
// Fastify hello-world started in the same run, and prints JSON with ratios.
// Scenarios: http, auth, chat, ws, ws-idle (default: all). BENCH_DURATION (s) and BENCH_CONNECTIONS tune it.
import { connections, duration, measure, ratio, startHello, startParley } from './lib.js'
import { authScenario } from './auth.js'
import { CONNECTIONS as chatConnections, chatScenario } from './chat.js'
import { wsIdleScenario, wsScenario } from './ws.js'

type Scenario = () => Promise<Record<string, unknown>>

const scenarios: Record<string, Scenario> = {
  async http () {
    const hello = await startHello()
    const parley = await startParley()
    try {
      const baseline = await measure({ url: hello.url })
      const live = await measure({ url: `${parley.url}/health/live` })
      return {
        baseline: { name: 'bare Fastify hello-world', ...baseline },
        target: { name: 'Parley GET /health/live', ...live },
        ratio: {
          requestsPerSecond: ratio(live.requestsPerSecond, baseline.requestsPerSecond),
          latencyP99: ratio(live.latencyP99Ms, baseline.latencyP99Ms)
        }
      }
    } finally {
      await Promise.allSettled([hello.stop(), parley.stop()])
    }
  },
  auth: authScenario,
  chat: chatScenario,
  ws: wsScenario,
  'ws-idle': wsIdleScenario
}

const wanted = process.argv.slice(2)
const names = wanted.length > 0 ? wanted : Object.keys(scenarios)
const results: Record<string, unknown> = {}
for (const name of names) {
  const scenario = scenarios[name]
  if (!scenario) {
    console.error(`unknown scenario "${name}"; known: ${Object.keys(scenarios).join(', ')}`)
    process.exit(2)
  }
  console.error(`[bench] ${name}: ${duration}s per target, ${name === 'chat' ? chatConnections : connections} connections`)
  results[name] = await scenario()
}
console.log(JSON.stringify({ date: new Date().toISOString(), node: process.version, duration, connections, results }, null, 2))
