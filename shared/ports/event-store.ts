/**
 * EventStore: the SSE event log behind resumable streams. Event ids are unique within a session and
 * name their stream, so a `Last-Event-ID` replays only that stream's missed messages.
 */
export interface StoredEvent {
  id: string;
  message: unknown;
}

export interface EventStore {
  /** Appends a message to a stream and returns its event id. */
  append(sessionId: string, streamId: string, message: unknown): Promise<string>;
  /** Events of the stream named by `lastEventId` that came after it; undefined when the id is unknown. */
  replayAfter(
    sessionId: string,
    lastEventId: string,
  ): Promise<{ streamId: string; events: StoredEvent[] } | undefined>;
  /** Forgets every stream of a session. */
  deleteSession(sessionId: string): Promise<void>;
  close(): Promise<void>;
}
