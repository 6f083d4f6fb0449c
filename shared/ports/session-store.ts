/**
 * SessionStore: the durable part of a client session (who owns it, what was negotiated, which backend
 * sessions it holds), so that a later issue can let any gateway replica continue it. Live objects
 * (sockets, streams, child processes) never go here: only JSON-serializable records.
 */
export interface SessionRecord {
  id: string;
  /** Stable identity of the principal that created the session; requests from anyone else are refused. */
  principal: string;
  /** `aggregate` for /mcp, or the server name for /servers/{name}/mcp. */
  scope: string;
  protocolVersion: string;
  clientInfo: Record<string, unknown>;
  clientCapabilities: Record<string, unknown>;
  /** Backend session ids by server name (HTTP backends only). */
  backendSessions: Record<string, { sessionId?: string; protocolVersion: string }>;
  createdAt: number;
  lastSeenAt: number;
}

export interface SessionStore {
  /** Stores or replaces a record; it expires after `ttlMs` without another put or touch. */
  put(record: SessionRecord, ttlMs: number): Promise<void>;
  get(id: string): Promise<SessionRecord | undefined>;
  /** Extends the expiry and updates lastSeenAt; false when the session is unknown or expired. */
  touch(id: string, ttlMs: number): Promise<boolean>;
  delete(id: string): Promise<void>;
  close(): Promise<void>;
}
