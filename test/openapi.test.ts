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

  // What Parley sends out (to webhooks, to devices) is documented for receivers.
  t.ok(doc.components.schemas.WebhookEvent && doc.components.schemas.PushPayload, 'the webhook body and the push payload are components')

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

  // Uploads describe their multipart body; downloads their image types, errors as JSON.
  for (const [path, method] of [['/api/media', 'post'], ['/api/users/me/avatar', 'put']] as const) {
    const body = doc.paths[path][method].requestBody
    t.ok(body?.content?.['multipart/form-data']?.schema?.properties?.file, `${method.toUpperCase()} ${path} documents its multipart body`)
  }
  const download = doc.paths['/api/media/{id}'].get.responses
  t.same(Object.keys(download['200'].content).sort(), ['image/gif', 'image/jpeg', 'image/png', 'image/webp'])
  t.same(Object.keys(download['404'].content), ['application/json'], 'errors of a download are JSON')

  // Every integer has a maximum that JavaScript and MongoDB hold exactly.
  const unbounded: string[] = []
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) { node.forEach((n, i) => walk(n, `${where}/${i}`)); return }
    if (node === null || typeof node !== 'object') return
    const schema = node as Record<string, unknown>
    if (schema.type === 'integer' && !(typeof schema.maximum === 'number' && schema.maximum <= Number.MAX_SAFE_INTEGER)) unbounded.push(where)
    for (const [key, value] of Object.entries(schema)) walk(value, `${where}/${key}`)
  }
  walk(doc, '#')
  const asyncapi = (await app.inject('/docs/asyncapi.json')).json()
  walk(asyncapi, 'asyncapi#')
  t.same(unbounded, [], 'no unbounded integer')

  // Any signed-in route can be rate limited or meet a dependency outage.
  for (const [path, item] of Object.entries<Partial<Record<string, Operation & { security?: unknown }>>>(doc.paths)) {
    for (const method of methods) {
      const op = item[method]
      if (op?.security === undefined) continue
      t.ok(op.responses?.['429'] && op.responses['503'], `${method.toUpperCase()} ${path} documents 429 and 503`)
    }
  }
})

t.test('Swagger UI is served at /docs', async (t) => {
  const app = await build(t)
  const res = await app.inject('/docs/')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
})
