// The HTTP side of the SDK: one fetch wrapper that signs requests, refreshes
// the access token before it expires (and once more on a 401), and shares one
// refresh between concurrent callers. A refresh that the server refuses
// (expired, or a reused refresh token, which ends the session) signs the
// client out cleanly: the `signedOut` callback fires once and requests fail
// with that code instead of looping.
import { ParleyError } from './errors.js'

export type AuthMode = 'token' | 'cookie'

export interface HttpOptions {
  /** The server's origin, e.g. `https://chat.example.com`; '' for the page's own origin. */
  baseUrl: string
  /**
   * `token` (default): tokens kept by the SDK and sent as `Authorization: Bearer`
   * (Node, native apps, other origins). `cookie`: browsers on the same origin;
   * the server's httpOnly cookies carry both tokens and JavaScript never sees the refresh token.
   */
  mode?: AuthMode
  fetch?: typeof fetch
  /** Token mode: a refresh token saved from an earlier run, to resume that session. */
  refreshToken?: string
  /** A bot's API key (`pk_…`): sent as the bearer token, never refreshed. */
  apiKey?: string
  /** Token mode: told every new refresh token (each works once), and null on sign-out, to persist it. */
  onRefreshToken?: (refreshToken: string | null) => void
  /** Told once when the session ends (signed out elsewhere, expired, refresh token reused). */
  onSignedOut?: (reason: string) => void
  /** Refresh this long before the access token expires (default 30 s, at most half its lifetime). */
  refreshMarginMs?: number
  now?: () => number
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>
  body?: unknown
  /** multipart/form-data (uploads) instead of JSON. */
  form?: FormData
  /** Send credentials (default true). */
  auth?: boolean
  /** Do not refresh and retry on a 401 (the refresh call itself). */
  noRetry?: boolean
}

interface Tokens { accessToken: string, expiresIn: number, refreshToken?: string }

const SIGNED_OUT_CODES = new Set(['INVALID_REFRESH_TOKEN', 'REFRESH_TOKEN_REUSED', 'SESSION_REVOKED'])

export class HttpSession {
  readonly mode: AuthMode
  private readonly fetchImpl: typeof fetch
  private readonly now: () => number
  private accessToken: string | null = null
  private expiresAt = 0
  private lifetimeMs = 0
  private refreshToken: string | null
  private refreshing: Promise<void> | null = null
  private signedIn: boolean

  constructor (private readonly options: HttpOptions) {
    this.mode = options.mode ?? 'token'
    // Bound: a bare `fetch` reference loses its `this` in browsers.
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis)
    this.now = options.now ?? Date.now
    this.refreshToken = options.refreshToken ?? null
    this.signedIn = this.refreshToken !== null
    if (options.apiKey !== undefined) {
      // A key does not expire; a revoked one is a 401 INVALID_API_KEY.
      this.accessToken = options.apiKey
      this.expiresAt = this.lifetimeMs = Number.POSITIVE_INFINITY
      this.signedIn = true
    }
  }

  get isSignedIn (): boolean { return this.signedIn }

  /** Takes the tokens of a sign-in, a verification or a refresh. */
  accept (tokens: Tokens): void {
    this.accessToken = tokens.accessToken
    this.lifetimeMs = tokens.expiresIn * 1000
    this.expiresAt = this.now() + this.lifetimeMs
    this.signedIn = true
    if (tokens.refreshToken !== undefined && this.mode === 'token') {
      this.refreshToken = tokens.refreshToken
      this.options.onRefreshToken?.(tokens.refreshToken)
    }
  }

  /** Forgets the session locally (after logout, or when the server ended it). */
  forget (reason: string | null): void {
    const wasSignedIn = this.signedIn
    this.accessToken = null
    this.expiresAt = 0
    this.signedIn = false
    if (this.mode === 'token' && this.refreshToken !== null) {
      this.refreshToken = null
      this.options.onRefreshToken?.(null)
    }
    if (wasSignedIn && reason !== null) this.options.onSignedOut?.(reason)
  }

  /** A valid access token (refreshed first when it is about to expire); null in cookie mode. */
  async validToken (): Promise<string | null> {
    const margin = Math.min(this.options.refreshMarginMs ?? 30_000, this.lifetimeMs / 2)
    const stale = this.accessToken === null || this.now() >= this.expiresAt - margin
    if (stale && this.signedIn) await this.refresh()
    if (!this.signedIn) throw new ParleyError('UNAUTHORIZED', 'Not signed in', 401)
    return this.mode === 'token' ? this.accessToken : null
  }

  /** Replaces the access token (and the refresh token, which works once); concurrent callers share one refresh. */
  refresh (): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const body = this.mode === 'token' ? { refreshToken: this.refreshToken ?? undefined } : {}
        if (this.mode === 'token' && this.refreshToken === null) throw new ParleyError('INVALID_REFRESH_TOKEN', 'No refresh token', 401)
        const tokens = await this.request<Tokens>('POST', '/api/auth/refresh', { body, auth: false, noRetry: true })
        this.accept(tokens)
      } catch (err) {
        if (err instanceof ParleyError && SIGNED_OUT_CODES.has(err.code)) this.forget(err.code)
        throw err
      } finally {
        this.refreshing = null
      }
    })()
    return this.refreshing
  }

  url (path: string, query?: RequestOptions['query']): string {
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) params.set(key, String(value))
    const search = params.toString()
    return `${this.options.baseUrl}${path}${search === '' ? '' : `?${search}`}`
  }

  async request<T> (method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const send = async (): Promise<Response> => {
      const headers: Record<string, string> = {}
      if (options.auth !== false) {
        const token = await this.validToken()
        if (token !== null) headers.authorization = `Bearer ${token}`
      }
      let body: string | FormData | undefined
      if (options.form !== undefined) body = options.form
      else if (options.body !== undefined) {
        headers['content-type'] = 'application/json'
        body = JSON.stringify(options.body)
      }
      try {
        return await this.fetchImpl(this.url(path, options.query), {
          method,
          headers,
          body,
          credentials: this.mode === 'cookie' ? 'include' : 'omit'
        })
      } catch (err) {
        throw new ParleyError('NETWORK_ERROR', `Could not reach the server: ${(err as Error).message}`)
      }
    }
    let res = await send()
    // The access token expired in flight (or the clock is off): refresh once and retry.
    if (res.status === 401 && options.auth !== false && !options.noRetry && this.signedIn) {
      const error = await toError(res)
      if (error.code !== 'INVALID_TOKEN') {
        if (SIGNED_OUT_CODES.has(error.code)) this.forget(error.code)
        throw error
      }
      await this.refresh()
      res = await send()
    }
    if (!res.ok) {
      const error = await toError(res)
      if (res.status === 401 && options.auth !== false && SIGNED_OUT_CODES.has(error.code)) this.forget(error.code)
      throw error
    }
    if (res.status === 204) return undefined as T
    const type = res.headers.get('content-type') ?? ''
    return (type.includes('application/json') ? await res.json() : await res.blob()) as T
  }
}

async function toError (res: Response): Promise<ParleyError> {
  const retryAfter = res.headers.get('retry-after')
  let code = `HTTP_${res.status}`
  let message = res.statusText
  try {
    const body = await res.json() as { code?: string, message?: string }
    code = body.code ?? code
    message = body.message ?? message
  } catch {
    // Not the API's JSON error shape (a proxy's page): the status is all there is.
  }
  return new ParleyError(code, message, res.status, retryAfter === null ? null : Number(retryAfter))
}
