// Mentions: @username resolved to members when stored, and an unread-mention
// count per member in the conversation list (kept while muted).
import t from 'tap'
import { build } from './helper.js'
import { createUser } from './accounts.js'
import { connect } from './ws-client.js'

t.test('@mentions: members only, never the sender; unread mention counts follow reads; muted members still counted', async (t) => {
  const app = await build(t)
  const [ada, bob, cy, dan] = [await createUser(app), await createUser(app), await createUser(app), await createUser(app)]
  const group = (await app.inject({ method: 'POST', url: '/api/conversations', headers: ada.auth, payload: { type: 'group', title: 'team', memberIds: [bob.id, cy.id] } })).json().id as string
  const send = async (user: typeof ada, clientMsgId: string, text: string) =>
    (await app.inject({ method: 'POST', url: `/api/conversations/${group}/messages`, headers: user.auth, payload: { clientMsgId, text } })).json()
  const mentionsOf = async (user: typeof ada) =>
    (await app.inject({ url: '/api/conversations', headers: user.auth })).json().conversations.find((c: { id: string }) => c.id === group).unreadMentionCount as number
  await app.inject({ method: 'PUT', url: `/api/conversations/${group}/mute`, headers: cy.auth, payload: { until: new Date(Date.now() + 3600_000).toISOString() } })

  const first = await send(ada, 'm1', `hi @${bob.username.toUpperCase()} and @${cy.username}! not @${dan.username} (not a member), not me @${ada.username}, not mail x@${bob.username}`)
  t.same(first.mentions.sort(), [bob.id, cy.id].sort(), 'members named, case-insensitively; not the sender, not a non-member, not an address')
  t.equal(await mentionsOf(bob), 1)
  t.equal(await mentionsOf(cy), 1, 'muted, still counted')
  t.equal(await mentionsOf(ada), 0)

  const plain = await send(cy, 'm2', 'no mention here')
  t.same(plain.mentions, [])
  const socket = await connect(app, { token: ada.accessToken })
  const second = await socket.request('send', { conversationId: group, clientMsgId: 'm3', text: `@${bob.username} again` })
  t.same(second.data.message.mentions, [bob.id], 'over the WebSocket too')
  t.equal(await mentionsOf(bob), 2)

  await app.inject({ method: 'POST', url: `/api/conversations/${group}/read`, headers: bob.auth, payload: { seq: plain.seq } })
  t.equal(await mentionsOf(bob), 1, 'the first mention read, the second not yet')
  await app.inject({ method: 'POST', url: `/api/conversations/${group}/read`, headers: bob.auth, payload: { seq: second.data.message.seq } })
  t.equal(await mentionsOf(bob), 0)
  const history = (await app.inject({ url: `/api/conversations/${group}/messages`, headers: bob.auth })).json().messages
  t.same(history.map((m: { mentions: string[] }) => m.mentions.length), [2, 0, 1], 'history carries them')
  await socket.close()
})
