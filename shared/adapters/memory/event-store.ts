import type { EventStore, StoredEvent } from '../../ports/event-store.js';

export interface MemoryEventStoreOptions {
  /** Events kept per stream; older ones are dropped and can no longer be replayed. */
  maxEventsPerStream?: number;
  /** Events older than this are dropped. */
  maxAgeMs?: number;
}

/** In-process EventStore. Event ids are `{streamId}_{seq}`, so an id names its stream. */
export class MemoryEventStore implements EventStore {
  private readonly sessions = new Map<
    string,
    Map<string, { seq: number; events: (StoredEvent & { at: number; seq: number })[] }>
  >();
  private readonly maxEvents: number;
  private readonly maxAgeMs: number;

  constructor(opts: MemoryEventStoreOptions = {}) {
    this.maxEvents = opts.maxEventsPerStream ?? 1000;
    this.maxAgeMs = opts.maxAgeMs ?? 15 * 60_000;
  }

  async append(sessionId: string, streamId: string, message: unknown): Promise<string> {
    let streams = this.sessions.get(sessionId);
    if (!streams) this.sessions.set(sessionId, (streams = new Map()));
    let stream = streams.get(streamId);
    if (!stream) streams.set(streamId, (stream = { seq: 0, events: [] }));
    const seq = ++stream.seq;
    const id = `${streamId}_${seq}`;
    const now = Date.now();
    stream.events.push({ id, message, at: now, seq });
    while (
      stream.events.length > this.maxEvents ||
      (stream.events[0] && now - stream.events[0].at > this.maxAgeMs)
    )
      stream.events.shift();
    return id;
  }

  async replayAfter(
    sessionId: string,
    lastEventId: string,
  ): Promise<{ streamId: string; events: StoredEvent[] } | undefined> {
    const cut = lastEventId.lastIndexOf('_');
    if (cut <= 0) return undefined;
    const streamId = lastEventId.slice(0, cut);
    const seq = Number(lastEventId.slice(cut + 1));
    const stream = this.sessions.get(sessionId)?.get(streamId);
    if (!stream || !Number.isSafeInteger(seq) || seq > stream.seq) return undefined;
    return {
      streamId,
      events: stream.events.filter((e) => e.seq > seq).map(({ id, message }) => ({ id, message })),
    };
  }

  async deleteSession(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
  }

  async close(): Promise<void> {
    this.sessions.clear();
  }
}
