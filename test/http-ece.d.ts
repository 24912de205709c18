// http_ece (the RFC 8188 / RFC 8291 reference implementation) ships no types.
declare module 'http_ece' {
  import type { ECDH } from 'node:crypto'
  export function decrypt (buffer: Buffer, params: { version: 'aes128gcm', privateKey: ECDH, authSecret: Buffer }): Buffer
}
