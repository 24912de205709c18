// Errors the services raise; each has a stable code, and the error handler
// sends it in the one error shape. `retryAfter` (seconds) becomes a header.
import createError from '@fastify/error'

export const UsernameTaken = createError('USERNAME_TAKEN', 'That username is taken', 409)
export const AccountExists = createError('ACCOUNT_EXISTS', 'An account with this email already exists; sign in instead', 409)
export const WeakPassword = createError('WEAK_PASSWORD', 'This password is too common; choose another', 400)
export const InvalidCode = createError('INVALID_CODE', 'The code is wrong', 400)
export const CodeExpired = createError('CODE_EXPIRED', 'The code has expired or was already used; request a new one', 400)
export const CodeExhausted = createError('CODE_EXHAUSTED', 'Too many wrong codes; request a new one', 400)
export const InvalidCredentials = createError('INVALID_CREDENTIALS', 'Wrong login or password', 401)
export const WrongPassword = createError('WRONG_PASSWORD', 'The current password is wrong', 403)
export const InvalidRefreshToken = createError('INVALID_REFRESH_TOKEN', 'The refresh token is missing, invalid or expired; sign in again', 401)
export const RefreshTokenReused = createError('REFRESH_TOKEN_REUSED', 'This refresh token was already used; the session has been ended for safety', 401)
// Which dependency is down goes to the log, never to the client.
export const ServiceUnavailable = createError('SERVICE_UNAVAILABLE', 'A service this request needs is unavailable; retry shortly', 503)
export const SessionNotFound = createError('SESSION_NOT_FOUND', 'No such session', 404)

const tooMany = (code: string, message: string) => createError(code, message, 429)
export const CodeCooldown = tooMany('CODE_COOLDOWN', 'A code was sent less than a minute ago; wait before asking again')
export const AccountLocked = tooMany('ACCOUNT_LOCKED', 'Too many failed sign-ins for this account; try again later')
export const TooManyGuesses = tooMany('TOO_MANY_GUESSES', 'Too many code attempts for this address; try again later')

export function withRetryAfter<E extends Error> (error: E, seconds: number): E & { retryAfter: number } {
  return Object.assign(error, { retryAfter: Math.max(1, Math.ceil(seconds)) })
}
