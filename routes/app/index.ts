// GET /app: the web app (web/, bundled into dist/web by `npm run build`).
// Static files only; the page talks to the API on the same origin, signed in
// with the httpOnly cookies.
import type { FastifyPluginAsync } from 'fastify'
import fastifyStatic from '@fastify/static'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
// From the sources (routes/app) or the build (dist/routes/app).
const candidates = [join(here, '..', '..', 'dist', 'web'), join(here, '..', '..', 'web')]

// The API's own CSP is `default-src 'none'`; the page needs its script, style,
// images (media and uploads previews) and the same-origin API and WebSocket.
const csp = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
  "connect-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"
].join('; ')

const app: FastifyPluginAsync = async (fastify) => {
  const dir = candidates.find((candidate) => existsSync(join(candidate, 'app.js')))
  if (dir === undefined) {
    fastify.log.warn('the web app is not built (npm run build); /app is not served')
    return
  }
  fastify.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', csp)
  })
  await fastify.register(fastifyStatic, { root: dir, prefix: '/', index: false, schemaHide: true, cacheControl: true, maxAge: '5m' })
  // The page itself, at /app/ (and /app sends the browser there, so relative asset URLs resolve).
  fastify.get('/', { schema: { hide: true } }, async (request, reply) => {
    if (!request.url.split('?')[0]!.endsWith('/')) return reply.redirect(`${request.url.split('?')[0]}/`)
    return reply.header('cache-control', 'no-cache').sendFile('index.html')
  })
}

export default app
