// Requests Parley makes to addresses its users chose: webhook targets and Web
// Push endpoints. Without a guard a user could point them at the server's own
// network (Redis, the database, cloud metadata) and have Parley call it. Two
// checks, both refusing private, loopback, link-local and other non-public
// addresses unless configuration allows them:
// - when the URL is given (fast feedback): its host, and what its name resolves to;
// - when each connection is opened (request-filtering-agent): the address
//   actually dialled, which also covers DNS answers that change later and
//   every redirect, since each hop opens its own connection through the agent.
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { rootCertificates } from 'node:tls'
import ipaddr from 'ipaddr.js'
import createError from '@fastify/error'
import { RequestFilteringHttpAgent, RequestFilteringHttpsAgent, type RequestFilteringAgentOptions } from 'request-filtering-agent'
import type { Agent } from 'node:http'
import type { Agent as HttpsAgent } from 'node:https'

export const TargetRefused = createError('TARGET_NOT_ALLOWED', 'The URL is not allowed: %s', 400)

export interface OutboundPolicy {
  /** Private, loopback and link-local addresses allowed (a trusted internal network). */
  allowPrivate: boolean
  /** Addresses or CIDR ranges allowed whatever their kind (e.g. a test receiver on 127.0.0.1). */
  allowedAddresses: string[]
  /** Extra certificate authorities (PEM) trusted next to the system's. */
  extraCa?: string
}

export type Outbound = ReturnType<typeof createOutbound>

export function createOutbound (policy: OutboundPolicy) {
  const allowList = policy.allowedAddresses.map((entry) => entry.includes('/') ? ipaddr.parseCIDR(entry) : ipaddr.parseCIDR(`${entry}/${ipaddr.parse(entry).kind() === 'ipv4' ? 32 : 128}`))
  const filter: RequestFilteringAgentOptions = {
    allowPrivateIPAddress: policy.allowPrivate,
    allowMetaIPAddress: policy.allowPrivate,
    allowIPAddressList: policy.allowedAddresses
  }
  const agents = {
    http: new RequestFilteringHttpAgent({ ...filter, keepAlive: true, maxSockets: 64 }),
    https: new RequestFilteringHttpsAgent({ ...filter, keepAlive: true, maxSockets: 64, ...(policy.extraCa ? { ca: [...rootCertificates, policy.extraCa] } : {}) })
  }

  function addressAllowed (address: string): boolean {
    let parsed = ipaddr.parse(address)
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address()
    if (allowList.some(([range, bits]) => range.kind() === parsed.kind() && parsed.match(range, bits))) return true
    return parsed.range() === 'unicast' || policy.allowPrivate
  }

  /** Throws TARGET_NOT_ALLOWED unless `raw` is an http(s) URL whose host is a public address (or allowed). */
  async function checkUrl (raw: string, options: { httpsOnly?: boolean } = {}): Promise<URL> {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      throw new TargetRefused('not a URL')
    }
    if (url.protocol !== 'https:' && (options.httpsOnly === true || url.protocol !== 'http:')) throw new TargetRefused(options.httpsOnly === true ? 'https only' : 'http or https only')
    if (url.username !== '' || url.password !== '') throw new TargetRefused('credentials in the URL')
    const host = url.hostname.replace(/^\[|\]$/g, '')
    let addresses: string[]
    if (isIP(host) !== 0) {
      addresses = [host]
    } else {
      try {
        addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)
      } catch {
        throw new TargetRefused('its host name does not resolve')
      }
    }
    if (!addresses.every(addressAllowed)) throw new TargetRefused('it points to a private, loopback or link-local address')
    return url
  }

  return {
    checkUrl,
    /** The connection agent for a request to `url`: it refuses disallowed addresses when it dials. */
    agentFor: (url: string | URL): Agent => String(url).startsWith('https:') ? agents.https : agents.http,
    httpsAgent: agents.https as HttpsAgent,
    close: (): void => { agents.http.destroy(); agents.https.destroy() }
  }
}
