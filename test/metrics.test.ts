// Prometheus metrics: only for the holder of METRICS_TOKEN, and they move with
// real traffic over HTTP and the WebSocket.
import t from 'tap'
import { build } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect } from './ws-client.js'

const TOKEN = 'metrics-token-for-the-test'

/** The value of one sample line (`name{labels} value`), summed over label sets that match. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0
  let found = false
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    if (!Object.entries(labels).every(([k, v]) => (match[2] ?? '').includes(`${k}="${v}"`))) continue
    found = true
    total += Number(match[3])
  }
  return found ? total : NaN
}

t.test('GET /metrics: token required, counters follow the traffic', async (t) => {
  const app = await build(t, { METRICS_TOKEN: TOKEN })
  const [ada, bob] = [await createUser(app), await createUser(app)]
  const conversationId = await directConversation(app, ada, bob)

  t.equal((await app.inject({ url: '/metrics' })).statusCode, 401, 'no token')
  t.equal((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong-token-of-some-length' } })).statusCode, 401, 'wrong token')

  const bobSocket = await connect(app, { token: bob.accessToken })
  const sent = await app.inject({ method: 'POST', url: `/api/conversations/${conversationId}/messages`, headers: ada.auth, payload: { clientMsgId: 'm1', text: 'hello' } })
  t.equal(sent.statusCode, 201)
  await bobSocket.waitFor((f) => f.type === 'message.created')
  await app.inject({ url: '/api/conversations', headers: bob.auth })
  await app.inject({ url: '/api/conversations', headers: bob.auth })

  const res = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  const text = res.body
  t.ok(sample(text, 'parley_http_request_duration_seconds_count', { route: '/api/conversations/:id/messages', status: '201' }) >= 1, 'HTTP durations by route pattern and status')
  t.notMatch(text, new RegExp(conversationId), 'no URL (and no id) in the labels')
  t.equal(sample(text, 'parley_ws_connections'), 1, 'open sockets')
  t.ok(sample(text, 'parley_ws_frames_total', { direction: 'out' }) >= 1)
  t.ok(sample(text, 'parley_events_published_total') >= 1)
  t.ok(sample(text, 'parley_events_delivered_total') >= 1)
  t.ok(sample(text, 'parley_fanout_lag_seconds_count') >= 1)
  t.ok(sample(text, 'parley_conversation_lock_wait_seconds_count') >= 1, 'lock waits')
  t.ok(sample(text, 'parley_read_model_lookups_total', { structure: 'list', result: 'hit' }) >= 1, 'read-model hits')
  t.ok(sample(text, 'parley_email_queue_jobs', { state: 'waiting' }) >= 0, 'queue depth')
  t.ok(sample(text, 'parley_nodejs_eventloop_lag_seconds') >= 0, 'event-loop lag')
  await bobSocket.close()
})

t.test('without METRICS_TOKEN there is no /metrics', async (t) => {
  const app = await build(t)
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404)
})

t.test('the Grafana dashboard (grafana/parley-dashboard.json) only charts metrics the app exports', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const dashboard = JSON.parse(await readFile(new URL('../grafana/parley-dashboard.json', import.meta.url), 'utf8')) as { panels: Array<{ title: string, targets: Array<{ expr: string }> }> }
  const app = await build(t, { METRICS_TOKEN: TOKEN })
  // Traffic first, so that every labelled series has a sample.
  const [ada, bob] = [await createUser(app), await createUser(app)]
  await directConversation(app, ada, bob)
  const exported = new Set((await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).body
    .split('\n').filter((line) => line.startsWith('# TYPE ')).map((line) => line.split(' ')[2]!))
  t.ok(dashboard.panels.length >= 10)
  for (const panel of dashboard.panels) {
    for (const { expr } of panel.targets) {
      for (const name of expr.match(/parley_[a-z0-9_]+/g) ?? []) {
        const base = name.replace(/_(bucket|count|sum)$/, '')
        t.ok(exported.has(name) || exported.has(base), `${panel.title}: ${name} is exported`)
      }
    }
  }
})
