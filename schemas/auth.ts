import { Type } from '@sinclair/typebox'
import { MAX_INT, Nullable } from './common.js'

// Password bounds belong to the schema: the service only hashes what passed it.
export const PASSWORD_MIN = 8
export const PASSWORD_MAX = 128

export const Email = Type.String({ format: 'email', maxLength: 254, description: 'Compared case-insensitively', examples: ['ada@example.com'] })
export const Username = Type.String({ pattern: '^[A-Za-z0-9_]{3,30}$', description: '3–30 letters, digits or _; unique regardless of case', examples: ['ada_l'] })
export const Password = Type.String({ minLength: PASSWORD_MIN, maxLength: PASSWORD_MAX, description: `${PASSWORD_MIN}–${PASSWORD_MAX} characters, not a common password`, examples: ['correct horse battery staple'] })
export const Code = Type.String({ pattern: '^[0-9]{6}$', description: 'The 6-digit code from the mail', examples: ['042917'] })
export const ObjectIdString = Type.String({ pattern: '^[0-9a-f]{24}$', description: 'Object id (24 hex digits)' })

const strict = { additionalProperties: false } as const

export const RegisterBody = Type.Object({ email: Email, username: Username, password: Password }, strict)
export const EmailBody = Type.Object({ email: Email }, strict)
export const VerifyBody = Type.Object({
  email: Email,
  code: Code,
  includeRefreshToken: Type.Optional(Type.Boolean({ description: 'Also return the refresh token in the body (native clients that do not keep cookies)' }))
}, strict)
export const LoginBody = Type.Object({
  login: Type.String({ minLength: 3, maxLength: 254, description: 'Email or username', examples: ['ada@example.com'] }),
  password: Type.String({ minLength: 1, maxLength: PASSWORD_MAX }),
  includeRefreshToken: Type.Optional(Type.Boolean({ description: 'Also return the refresh token in the body (native clients that do not keep cookies)' }))
}, strict)
export const RefreshBody = Type.Object({
  refreshToken: Type.Optional(Type.String({ maxLength: 1024, description: 'For clients without cookies; browsers send the refresh cookie instead' }))
}, strict)
export const ResetBody = Type.Object({ email: Email, code: Code, newPassword: Password }, strict)
export const ChangePasswordBody = Type.Object({ currentPassword: Type.String({ minLength: 1, maxLength: PASSWORD_MAX }), newPassword: Password }, strict)
export const DeleteAccountBody = Type.Object({
  password: Type.String({ minLength: 1, maxLength: PASSWORD_MAX, description: 'Your current password, to confirm' })
}, strict)
export const SessionParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{22}$', description: 'Session id' }) }, strict)

export const PublicUser = Type.Object({
  id: ObjectIdString,
  username: Type.String(),
  displayName: Type.String(),
  bio: Type.String(),
  avatarUrl: Nullable(Type.String()),
  lastSeenAt: Nullable(Type.String({ format: 'date-time' })),
  bot: Type.Optional(Type.Literal(true, { description: 'Present on bot accounts' }))
}, { $id: 'PublicUser', title: 'PublicUser' })

export const SelfUser = Type.Object({
  id: ObjectIdString,
  email: Type.String(),
  username: Type.String(),
  displayName: Type.String(),
  bio: Type.String(),
  avatarUrl: Nullable(Type.String()),
  lastSeenAt: Nullable(Type.String({ format: 'date-time' })),
  createdAt: Type.String({ format: 'date-time' }),
  bot: Type.Optional(Type.Literal(true))
}, { title: 'SelfUser' })

export const SignedInResponse = Type.Object({
  user: SelfUser,
  accessToken: Type.String({ description: 'Also set as an httpOnly cookie; send as `Authorization: Bearer` from non-browser clients' }),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ maximum: MAX_INT, description: 'Access-token lifetime in seconds' }),
  refreshToken: Type.Optional(Type.String({ description: 'Only when includeRefreshToken was set; otherwise only in the httpOnly cookie' }))
})

export const TokenResponse = Type.Object({
  accessToken: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ maximum: MAX_INT }),
  refreshToken: Type.Optional(Type.String({ description: 'Only when the refresh token was sent in the body' }))
})

export const Accepted = Type.Object({ status: Type.Literal('accepted'), message: Type.String() })
export const Done = Type.Object({ status: Type.Literal('ok') })

export const SessionsResponse = Type.Object({
  sessions: Type.Array(Type.Object({
    id: Type.String(),
    current: Type.Boolean(),
    device: Type.String({ description: 'User agent at sign-in' }),
    ip: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    lastUsedAt: Type.String({ format: 'date-time', description: 'Sign-in or last refresh' })
  }))
})
