/**
 * ApiKeyStore: API key records (hashed, never the key itself), shared by every edge so that a key
 * created or revoked anywhere is honoured everywhere. The edge looks keys up by id (the part of the key
 * before its secret), then compares the hash in constant time.
 */
export interface ApiKeyRecord {
  /** Public identifier, the `<id>` of `mcpgw_<id>_<secret>`. */
  id: string;
  /** `hmac-sha256:<base64url>` of the secret under the server pepper. */
  hash: string;
  /** Subject of the principal this key authenticates. */
  owner: string;
  tenant: string;
  roles: string[];
  scopes: string[];
  createdAt: number;
  /** Epoch ms after which the key is refused; absent: never expires. */
  expiresAt?: number;
  revoked: boolean;
  description?: string;
}

export interface ApiKeyStore {
  /** The record of `id`, revoked or not; undefined when there is none. */
  get(id: string): Promise<ApiKeyRecord | undefined>;
  /** Creates or replaces the record of `record.id`. */
  put(record: ApiKeyRecord): Promise<void>;
  /** Every record, ordered by id. */
  list(): Promise<ApiKeyRecord[]>;
  /** Marks the key revoked (it stays listed); false when there is no such key. */
  revoke(id: string): Promise<boolean>;
  /**
   * Calls `listener` with the id of every record changed by any writer (this process or, for shared
   * stores, another one) once this store no longer serves the old version. Returns the unsubscription.
   */
  onChange(listener: (id: string) => void): () => void;
  close(): Promise<void>;
}
