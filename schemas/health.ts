import { Type } from '@sinclair/typebox'

export const LiveResponse = Type.Object({ status: Type.Literal('ok') }, { examples: [{ status: 'ok' }] })

const State = Type.Union([Type.Literal('up'), Type.Literal('down')])
export const ReadyResponse = Type.Object({
  status: Type.Literal('ok'),
  checks: Type.Object({ mongodb: State, redis: State })
}, { examples: [{ status: 'ok', checks: { mongodb: 'up', redis: 'up' } }] })
