import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox'

/**
 * `schema` or null, as OpenAPI 3.0's `nullable`. Unlike `anyOf: [schema, null]`
 * it is serialized without validating the value against each branch, which
 * showed in the profiles of the hot reads.
 */
export function Nullable<T extends TSchema> (schema: T, options: { description?: string } = {}): TUnsafe<Static<T> | null> {
  return Type.Unsafe<Static<T> | null>({ ...schema, ...options, nullable: true })
}

/** One of a few strings, as one `enum` (serialized as a string, not as an `anyOf` of constants). */
export function StringEnum<const T extends readonly string[]> (values: T, options: { description?: string } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options })
}

/** The largest integer any schema accepts: what JavaScript and MongoDB both hold exactly. */
export const MAX_INT = Number.MAX_SAFE_INTEGER

// The one error shape of the whole API (Fastify's own).
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer({ maximum: MAX_INT, examples: [400] }),
  code: Type.String({ description: 'Stable, machine-readable error code', examples: ['VALIDATION_ERROR'] }),
  error: Type.String({ examples: ['Bad Request'] }),
  message: Type.String({ examples: ['body/email must match format "email"'] })
}, { $id: 'ErrorResponse', title: 'Error' })

export type ErrorBody = Static<typeof ErrorResponse>

const errorDescriptions: Record<number, string> = {
  400: 'Invalid request (code VALIDATION_ERROR, INVALID_JSON or a route-specific code)',
  401: 'Not signed in, or the token is invalid, expired or revoked',
  403: 'Signed in but not allowed',
  404: 'Not found',
  409: 'Conflict',
  413: 'Body or upload too large (BODY_TOO_LARGE)',
  415: 'Unsupported content type (UNSUPPORTED_MEDIA_TYPE)',
  429: 'Rate limited (RATE_LIMITED); see the retry-after header',
  500: 'Internal error (INTERNAL_ERROR); details are in the server log under the request id',
  503: 'Temporarily unavailable'
}

/** Response schemas for the given error statuses, all in the one error shape. */
export function errorResponses<S extends number> (...statuses: S[]): Record<S, TUnsafe<ErrorBody>> {
  const out = {} as Record<S, TUnsafe<ErrorBody>>
  for (const status of statuses) {
    // A reference to the shared schema (added by plugins/errors.ts), typed as its static shape.
    out[status] = Type.Unsafe<ErrorBody>({ $ref: 'ErrorResponse#', description: errorDescriptions[status] ?? 'Error' })
  }
  return out
}

/** Errors any route with a JSON body can answer. */
export const bodyErrors = [400, 413, 415, 429, 500] as const

/** A $ref to a shared schema (registered by plugins/schemas.ts), typed as the schema itself. */
export function ref<T extends TSchema> (schema: T): TUnsafe<Static<T>> {
  if (typeof schema.$id !== 'string') throw new Error('ref() needs a schema with an $id')
  return Type.Unsafe<Static<T>>({ $ref: `${schema.$id}#` })
}

/** OpenAPI security of routes that need a signed-in user: Bearer token or the access cookie. */
export const bearerOrCookie: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }]

/**
 * Route config for an upload route: multipart is allowed there, and the
 * OpenAPI document gets its multipart request body. (The body is read by the
 * handler as a stream, so it is described, not validated, by Fastify.)
 */
export function uploadRoute (body: TSchema) {
  return {
    multipart: true,
    swaggerTransform: ({ schema, url }: { schema: object, url: string }) => ({ schema: { ...schema, body }, url })
  }
}
