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
  /** Backend sessions by server name (HTTP backends only), so that another replica can continue them. */
  backendSessions: Record<string, BackendSessionRecord>;
  createdAt: number;
  lastSeenAt: number;
}

/** One backend session a client session holds: enough to send the backend's next request from anywhere. */
export interface BackendSessionRecord {
  /** The backend's `Mcp-Session-Id`, when it issued one. */
  sessionId?: string;
  protocolVersion: string;
  /** The backend's InitializeResult (its capabilities decide what the gateway asks of it). */
  initializeResult?: Record<string, unknown>;
  /** The backend replica (pool member id, its URL) that holds the session; absent: the first. */
  replica?: string;
}

export interface SessionStore {
  /** Stores or replaces a record; it expires after `ttlMs` without another put or touch. */
  put(record: SessionRecord, ttlMs: number): Promise<void>;
  get(id: string): Promise<SessionRecord | undefined>;
  /** Extends the expiry and updates lastSeenAt; false when the session is unknown or expired. */
  touch(id: string, ttlMs: number): Promise<boolean>;
  /**
   * Records (or, with undefined, forgets) the backend session a client session holds with `server`,
   * without rewriting the rest of the record: concurrent updates for different servers never lose each
   * other. Does nothing when the session is unknown or expired.
   */
  setBackendSession(id: string, server: string, backend: BackendSessionRecord | undefined): Promise<void>;
  delete(id: string): Promise<void>;
  close(): Promise<void>;
}
