// A Web Push service for tests: a real HTTPS endpoint on 127.0.0.1 that checks
// each request as a push service would (the VAPID JWT of RFC 8292 against the
// key in the header, the aes128gcm encoding) and, playing the device too,
// decrypts the payload with the subscription's own keys (RFC 8291).
import { createECDH, createPublicKey, randomBytes, verify, type ECDH } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import selfsigned from 'selfsigned'
import { decrypt } from 'http_ece'

export interface ReceivedPush {
  device: string
  payload: Record<string, unknown>
  headers: Record<string, string | string[] | undefined>
  jwt: { header: Record<string, unknown>, claims: { aud: string, exp: number, sub: string } }
  /** The VAPID public key the request was signed with. */
  signedWith: string
}

export interface Device {
  id: string
  /** What a browser's PushSubscription.toJSON() gives. */
  subscription: { endpoint: string, keys: { p256dh: string, auth: string } }
  ecdh: ECDH
  auth: Buffer
}

export interface TestPushService {
  origin: string
  /** PEM of the certificate authority the app must trust (OUTBOUND_CA_FILE). */
  caFile: string
  received: ReceivedPush[]
  /** Problems found in a request (bad JWT, bad encoding): the test asserts there are none. */
  rejected: string[]
  device: () => Device
  /** Answers this status to the device's next `times` requests (410: gone, 500: retry). */
  answer: (deviceId: string, status: number, times?: number) => void
  waitFor: (count: number, timeoutMs?: number) => Promise<ReceivedPush[]>
  close: () => Promise<void>
}

function verifyVapid (authorization: string | undefined, origin: string): Omit<ReceivedPush, 'device' | 'payload' | 'headers'> {
  const match = /^vapid t=([\w-]+\.[\w-]+\.[\w-]+), k=([\w-]+)$/.exec(authorization ?? '')
  if (!match) throw new Error(`Authorization is not "vapid t=…, k=…": ${authorization}`)
  const [token, key] = [match[1]!, match[2]!]
  const [header, claims, signature] = token.split('.') as [string, string, string]
  const raw = Buffer.from(key, 'base64url')
  if (raw.length !== 65 || raw[0] !== 4) throw new Error('k is not an uncompressed P-256 point')
  const publicKey = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') }, format: 'jwk' })
  if (!verify('sha256', Buffer.from(`${header}.${claims}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'))) throw new Error('the VAPID JWT signature does not verify')
  const parsedHeader = JSON.parse(Buffer.from(header, 'base64url').toString()) as Record<string, unknown>
  const parsedClaims = JSON.parse(Buffer.from(claims, 'base64url').toString()) as { aud: string, exp: number, sub: string }
  if (parsedHeader.alg !== 'ES256') throw new Error('alg is not ES256')
  if (parsedClaims.aud !== origin) throw new Error(`aud ${parsedClaims.aud} is not the push service origin ${origin}`)
  const now = Date.now() / 1000
  if (!(parsedClaims.exp > now && parsedClaims.exp <= now + 24 * 3600)) throw new Error('exp is not within the next 24 hours')
  return { jwt: { header: parsedHeader, claims: parsedClaims }, signedWith: key }
}

export async function startPushService (): Promise<TestPushService> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], { keyType: 'ec', notAfterDate: new Date(Date.now() + 24 * 3600_000), extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }] })
  const caFile = join(tmpdir(), `parley-push-ca-${randomBytes(4).toString('hex')}.pem`)
  await writeFile(caFile, pems.cert)
  const devices = new Map<string, Device>()
  const answers = new Map<string, { status: number, times: number }>()
  const received: ReceivedPush[] = []
  const rejected: string[] = []
  let origin = ''
  const waiters: Array<() => void> = []

  const server: Server = createServer({ key: pems.private, cert: pems.cert }, (request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (c: Buffer) => chunks.push(c))
    request.on('end', () => {
      const deviceId = /^\/push\/([\w-]+)$/.exec(request.url ?? '')?.[1]
      const device = deviceId ? devices.get(deviceId) : undefined
      if (!device) { response.writeHead(404).end(); return }
      const scripted = answers.get(device.id)
      if (scripted && scripted.times > 0) {
        scripted.times--
        response.writeHead(scripted.status).end()
        return
      }
      try {
        if (request.method !== 'POST') throw new Error(`method ${request.method}`)
        if (request.headers['content-encoding'] !== 'aes128gcm') throw new Error(`content-encoding ${request.headers['content-encoding']}`)
        if (!/^\d+$/.test(String(request.headers.ttl))) throw new Error('no TTL header')
        const vapid = verifyVapid(request.headers.authorization, origin)
        const plain = decrypt(Buffer.concat(chunks), { version: 'aes128gcm', privateKey: device.ecdh, authSecret: device.auth })
        received.push({ device: device.id, payload: JSON.parse(plain.toString('utf8')) as Record<string, unknown>, headers: request.headers, ...vapid })
        response.writeHead(201, { location: `${origin}/messages/${received.length}` }).end()
        for (const wake of waiters.splice(0)) wake()
      } catch (err) {
        rejected.push((err as Error).message)
        response.writeHead(400).end()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  origin = `https://127.0.0.1:${port}`

  return {
    origin,
    caFile,
    received,
    rejected,
    device: () => {
      const ecdh = createECDH('prime256v1')
      ecdh.generateKeys()
      const auth = randomBytes(16)
      const id = randomBytes(8).toString('hex')
      const device: Device = { id, ecdh, auth, subscription: { endpoint: `${origin}/push/${id}`, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } } }
      devices.set(id, device)
      return device
    },
    answer: (deviceId, status, times = 1) => { answers.set(deviceId, { status, times }) },
    waitFor: async (count, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs
      while (received.length < count) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`expected ${count} pushes, got ${received.length} (rejected: ${rejected.join('; ') || 'none'})`)
        await new Promise<void>((resolve) => { waiters.push(resolve); setTimeout(resolve, Math.min(left, 100)).unref() })
      }
      return received
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
