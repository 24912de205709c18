// inOrder against the run's real Redis (one Redis in the first pass of npm
// test, the Redis Cluster in the second): later steps see what earlier ones
// wrote, sent at once where the topology keeps the order.
import t from 'tap'
import { Cluster } from 'ioredis'
import { build, uniqueId } from './helper.js'
import { inOrder } from '../services/redis-client.js'

t.test('inOrder: each step sees the steps before it; sent at once on one Redis, one after the other on a cluster', async (t) => {
  const app = await build(t)
  const redis = app.redis
  const id = uniqueId()
  // Different keys: on a cluster they fall into different slots, mostly on different nodes.
  const [first, second, third] = [`inorder:${id}:a`, `inorder:${id}:b`, `inorder:${id}:c`]
  for (let round = 0; round < 20; round++) {
    let firstLanded = false
    let secondSentBeforeFirstLanded: boolean | undefined
    let seen: Array<string | null> = []
    await inOrder(redis, [
      () => redis.set(first, String(round)).then(() => { firstLanded = true }),
      () => { secondSentBeforeFirstLanded = !firstLanded; return redis.set(second, String(round)) },
      () => Promise.all([redis.get(first), redis.get(second)]).then((values) => { seen = values }),
      () => redis.set(third, String(round))
    ])
    t.same(seen, [String(round), String(round)], `round ${round}: the third step read what the first two wrote`)
    t.equal(secondSentBeforeFirstLanded, !(redis instanceof Cluster), redis instanceof Cluster ? 'cluster: the second step waited for the first' : 'one Redis: the second step went out with the first')
  }
  t.equal(await redis.get(third), '19', 'the last step ran')
})

t.test('inOrder rejects when a step fails', async (t) => {
  const app = await build(t)
  const key = `inorder:${uniqueId()}:list`
  await app.redis.rpush(key, 'x')
  await t.rejects(inOrder(app.redis, [
    () => app.redis.set(key, 'not a list', 'XX', 'GET'),
    () => app.redis.incr(`inorder:${uniqueId()}:n`)
  ]), /WRONGTYPE/)
})
