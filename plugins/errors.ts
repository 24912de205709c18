import fp from 'fastify-plugin'
import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ErrorResponse, errorResponses } from '../schemas/common.js'

/** Seconds a client is told to wait after a 503. */
export const SERVICE_RETRY_AFTER_S = 5

// Fastify's own error codes mapped onto the API's stable codes.
const frameworkCodes: Record<string, string> = {
  FST_ERR_VALIDATION: 'VALIDATION_ERROR',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_CONTENT_LENGTH',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_REQ_FILE_TOO_LARGE: 'UPLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'TOO_MANY_FILES',
  FST_PARTS_LIMIT: 'TOO_MANY_PARTS',
  FST_FIELDS_LIMIT: 'TOO_MANY_FIELDS',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_UNDER_PRESSURE: 'SERVICE_UNAVAILABLE',
  FST_ERR_NOT_FOUND: 'ROUTE_NOT_FOUND',
  FST_ERR_BAD_URL: 'BAD_URL',
  FST_ERR_ASYNC_CONSTRAINT: 'BAD_REQUEST'
}

/** A code the app itself gave the error (stable, upper case), not one of Fastify's. */
const isOwnCode = (code: string | undefined): code is string => code !== undefined && /^[A-Z][A-Z0-9_]+$/.test(code) && !code.startsWith('FST_')

function stableCode (error: FastifyError, statusCode: number): string {
  if (error.code && frameworkCodes[error.code]) return frameworkCodes[error.code]!
  if (error.validation) return 'VALIDATION_ERROR'
  // JSON.parse errors thrown by the body parser carry no code of their own.
  if (error instanceof SyntaxError && statusCode === 400) return 'INVALID_JSON'
  if (isOwnCode(error.code)) return error.code
  if (statusCode === 429) return 'RATE_LIMITED'
  return (STATUS_CODES[statusCode] ?? 'ERROR').toUpperCase().replace(/[^A-Z0-9]+/g, '_')
}

/**
 * Errors the router raises before any route or hook runs (an undecodable URL,
 * a path parameter past the router's limit): answered in the same one shape,
 * without echoing the URL.
 */
export function frameworkErrorReply (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const statusCode = error.statusCode ?? 400
  const messages: Record<string, string> = {
    FST_ERR_BAD_URL: 'The URL is not valid',
    FST_ERR_MAX_PARAM_LENGTH: 'A path parameter is too long'
  }
  reply.code(statusCode).send({
    statusCode,
    code: error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'URI_TOO_LONG' : stableCode(error, statusCode),
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: messages[error.code] ?? 'Bad request'
  })
}

export default fp(async (fastify) => {
  fastify.addSchema(ErrorResponse)

  // What any API route can answer besides its own errors, documented once here:
  // 503 while a dependency is down, 429 where a rate limit applies.
  fastify.addHook('onRoute', (route) => {
    const schema = route.schema as { response?: Record<string, unknown>, security?: unknown, hide?: boolean } | undefined
    if (schema?.response === undefined || schema.hide === true || !route.url.startsWith('/api/')) return
    const limited = schema.security !== undefined || route.config?.rateLimit !== undefined
    schema.response = { ...errorResponses(503), ...(limited ? errorResponses(429) : {}), ...schema.response }
  })

  fastify.setErrorHandler((error: FastifyError, request, reply) => {
    let statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    const retryAfter = (error as FastifyError & { retryAfter?: number }).retryAfter
    // A failure that a lost dependency caused is a 503 the client may retry,
    // not an internal error (plugins/availability.ts tracks the dependencies).
    const dependencyLost = statusCode === 500 && fastify.hasDecorator('isDependencyError') &&
      (fastify.isDependencyError(error) || fastify.dependenciesDown().length > 0)
    if (dependencyLost) statusCode = 503
    if (statusCode === 503) {
      // Details stay in the log, under this request's id.
      request.log.warn({ err: error }, 'request failed: service unavailable')
      const ours = !dependencyLost && isOwnCode(error.code)
      if (!reply.hasHeader('retry-after')) reply.header('retry-after', String(retryAfter ?? SERVICE_RETRY_AFTER_S))
      return reply.code(503).send({
        statusCode,
        code: ours ? error.code : 'SERVICE_UNAVAILABLE',
        error: STATUS_CODES[503],
        message: ours ? error.message : error.code === 'FST_UNDER_PRESSURE' ? 'The server is under pressure; retry shortly' : 'A service this request needs is unavailable; retry shortly'
      })
    }
    if (statusCode >= 500) {
      request.log.error({ err: error }, 'request failed')
      return reply.code(statusCode).send({ statusCode, code: 'INTERNAL_ERROR', error: STATUS_CODES[statusCode], message: 'Internal Server Error' })
    }
    if (statusCode !== 404 && statusCode !== 401) request.log.info({ code: error.code, message: error.message }, 'request rejected')
    if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter))
    return reply.code(statusCode).send({
      statusCode,
      code: stableCode(error, statusCode),
      error: STATUS_CODES[statusCode] ?? 'Error',
      message: error.message
    })
  })

  fastify.setNotFoundHandler((request, reply) => {
    return reply.code(404).send({ statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: `Route ${request.method} ${request.url.split('?')[0]} not found` })
  })
}, { name: 'errors', dependencies: ['config'] })
