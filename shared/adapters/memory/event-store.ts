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
    // A snapshot, as a shared store would keep: the caller may reuse or change its object afterwards.
    stream.events.push({ id, message: structuredClone(message), at: Date.now(), seq });
    this.trim(stream.events);
    return id;
  }

  async replayAfter(
    sessionId: string,
    lastEventId: string,
  ): Promise<{ streamId: string; events: StoredEvent[] } | undefined> {
    const cut = lastEventId.lastIndexOf('_');
    if (cut < 0) return undefined;
    const streamId = lastEventId.slice(0, cut);
    const digits = lastEventId.slice(cut + 1);
    // Only the form append writes: Number() alone would read `a_` as seq 0 and replay the whole stream.
    if (!/^[1-9]\d*$/.test(digits)) return undefined;
    const seq = Number(digits);
    const stream = this.sessions.get(sessionId)?.get(streamId);
    if (!stream || !Number.isSafeInteger(seq) || seq > stream.seq) return undefined;
    // Trimming here too: a stream nobody appends to would otherwise keep replaying aged events.
    this.trim(stream.events);
    return {
      streamId,
      events: stream.events
        .filter((e) => e.seq > seq)
        .map(({ id, message }) => ({ id, message: structuredClone(message) })),
    };
  }

  async deleteSession(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
  }

  async close(): Promise<void> {
    this.sessions.clear();
  }

  private trim(events: { at: number }[]): void {
    const now = Date.now();
    while (events.length > this.maxEvents || (events[0] && now - events[0].at > this.maxAgeMs))
      events.shift();
  }
}
