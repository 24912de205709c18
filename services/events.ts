// Real-time events: what the services announce after a write is stored. The
// gateway (plugins/realtime.ts) carries them to the sockets of `userIds` on
// every instance; without it they go nowhere.
export type EventType =
  | 'message.created' | 'message.updated' | 'message.deleted' | 'reaction.updated'
  | 'conversation.updated' | 'conversation.removed' | 'read.updated'
  | 'typing' | 'presence' | 'session.revoked'

export interface RealtimeEvent {
  type: EventType
  data: Record<string, unknown>
}

export type Publish = (userIds: string[], event: RealtimeEvent) => Promise<void>
