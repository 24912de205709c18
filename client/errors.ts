// Every failure the SDK reports: the server's stable `code` (the same for HTTP
// and the WebSocket), the HTTP status where there was one, and retry-after.
export class ParleyError extends Error {
  override name = 'ParleyError'
  constructor (
    readonly code: string,
    message: string,
    readonly status: number | null = null,
    /** Seconds, from `retry-after` (429, 503). */
    readonly retryAfter: number | null = null
  ) {
    super(message)
  }
}

/** Failures worth trying again unchanged: the server or the network, not the request. */
export function isRetryable (err: unknown): boolean {
  if (!(err instanceof ParleyError)) return true // network failure (fetch rejected)
  return err.status === null || err.status >= 500 || err.code === 'RATE_LIMITED' || err.code === 'NETWORK_ERROR'
}
