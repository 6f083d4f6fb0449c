/**
 * ResponseCache: tool results kept for their time to live and shared by the gateway processes that use
 * one store. Keys are opaque strings the caller built (they already include server, tool, arguments and
 * caller scope); values are JSON.
 */
export interface CachedResponse {
  /** The full tool result, as the backend sent it. */
  result: Record<string, unknown>;
  /** Epoch ms the entry was stored. */
  storedAt: number;
  /** Epoch ms after which the entry is stale (served only while the backend fails). */
  freshUntil: number;
  /** True for a cached tool error (`isError`): a short negative entry. */
  negative?: boolean;
}

export interface ResponseCache {
  get(key: string): Promise<CachedResponse | undefined>;
  /** Stores `value`; the store may drop it after `keepMs` (fresh time plus any stale-if-error time). */
  set(key: string, value: CachedResponse, keepMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}
