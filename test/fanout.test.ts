// Targeted fan-out: an instance receives only the events of users it holds a
// socket of, whatever the traffic elsewhere, and still delivers every event
// to every device of its users.
import t from 'tap'
import { twoInstances } from './helper.js'
import { createUser, directConversation } from './accounts.js'
import { connect } from './ws-client.js'

t.test('an instance receives only events addressed to its own sockets\' users', async (t) => {
  const [one, two] = await twoInstances(t, { SEND_RATE_LIMIT_MAX: 100000 })
  const [ada, bob, cy] = [await createUser(one), await createUser(one), await createUser(one)]
  const adaBob = await directConversation(one, ada, bob)
  const adaCy = await directConversation(one, ada, cy)
  // Ada and Bob are on instance one; Cy only on instance two.
  const bobSocket = await connect(one, { token: bob.accessToken })
  const cySocket = await connect(two, { token: cy.accessToken })
  t.equal(one.realtime.stats().subscribedUsers, 1)
  t.equal(two.realtime.stats().subscribedUsers, 1)
  // Their own presence announcements come first; let them land.
  await cySocket.waitFor((f) => f.type === 'presence')
  await bobSocket.waitFor((f) => f.type === 'presence')
  await new Promise((resolve) => setTimeout(resolve, 200))
  const before = { one: one.realtime.stats(), two: two.realtime.stats() }

  for (let i = 0; i < 20; i++) await one.messages.send(adaBob, ada.id, { clientMsgId: `ab${i}`, text: `to bob ${i}` })
  await bobSocket.waitFor(() => bobSocket.frames.filter((f) => f.type === 'message.created').length === 20)
  const two20 = two.realtime.stats()
  t.equal(two20.eventsReceived - before.two.eventsReceived, 0, 'instance two received none of the 20 events of Ada and Bob')
  const oneReceived = one.realtime.stats().eventsReceived - before.one.eventsReceived
  const oneDelivered = one.realtime.stats().eventsDelivered - before.one.eventsDelivered
  t.equal(oneReceived, 20, 'instance one received each event once (only Bob is there)')
  t.equal(oneDelivered, oneReceived, 'and delivered every event it received')

  await two.messages.send(adaCy, ada.id, { clientMsgId: 'ac', text: 'to cy' })
  t.equal((await cySocket.waitFor((f) => f.type === 'message.created')).data.message.text, 'to cy', 'Cy gets hers on instance two')

  // A second device of Bob on instance two: from now on instance two receives Bob's events too.
  const bobPhone = await connect(two, { token: bob.accessToken })
  await one.messages.send(adaBob, ada.id, { clientMsgId: 'both', text: 'both devices' })
  await bobSocket.waitFor((f) => f.type === 'message.created' && f.data.message.text === 'both devices')
  await bobPhone.waitFor((f) => f.type === 'message.created' && f.data.message.text === 'both devices')
  t.pass('every device of a user gets the event, on whichever instance')

  // The last socket of a user on an instance ends its subscription there.
  await bobPhone.close()
  for (let i = 0; i < 50 && two.realtime.stats().subscribedUsers !== 1; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(two.realtime.stats().subscribedUsers, 1, 'only Cy is left on instance two')
  const received = two.realtime.stats().eventsReceived
  await one.messages.send(adaBob, ada.id, { clientMsgId: 'after', text: 'after' })
  await bobSocket.waitFor((f) => f.type === 'message.created' && f.data.message.text === 'after')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(two.realtime.stats().eventsReceived, received, 'instance two no longer receives Bob\'s events')
  await Promise.all([bobSocket.close(), cySocket.close()])
})
