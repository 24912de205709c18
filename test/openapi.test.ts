import t from 'tap'
import SwaggerParser from '@apidevtools/swagger-parser'
import { build } from './helper.js'

const methods = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const

interface Operation {
  tags?: string[]
  summary?: string
  responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>
}

t.test('OpenAPI document is valid and every operation is fully described', async (t) => {
  const app = await build(t)
  const res = await app.inject('/docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.0.3')

  // validate() dereferences in place: give it a copy.
  await t.resolves(SwaggerParser.validate(structuredClone(doc)), 'valid OpenAPI 3')

  let operations = 0
  for (const [path, item] of Object.entries<Partial<Record<string, Operation>>>(doc.paths)) {
    for (const method of methods) {
      const op = item[method]
      if (op === undefined) continue
      operations++
      const where = `${method.toUpperCase()} ${path}`
      t.ok(Array.isArray(op.tags) && op.tags.length > 0, `${where} has tags`)
      t.ok(typeof op.summary === 'string' && op.summary.length > 0, `${where} has a summary`)
      const statuses = Object.keys(op.responses ?? {})
      t.ok(statuses.some((s) => s.startsWith('2') || s.startsWith('3')), `${where} documents its success response`)
      t.ok(statuses.some((s) => s.startsWith('4') || s.startsWith('5')), `${where} documents its error responses`)
      for (const status of statuses) {
        if (status === '204') continue
        const content = Object.values(op.responses?.[status]?.content ?? {})
        t.ok(content.length > 0 && content.every((c) => c.schema !== undefined), `${where} ${status} has a schema`)
      }
    }
  }
  t.ok(operations >= 2, 'operations were found')
})

t.test('Swagger UI is served at /docs', async (t) => {
  const app = await build(t)
  const res = await app.inject('/docs/')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
})
