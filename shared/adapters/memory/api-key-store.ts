/** ApiKeyStore in memory: one process, keys gone at restart (tests, single nodes with config keys). */
import type { ApiKeyRecord, ApiKeyStore } from '../../ports/api-key-store.js';

export class MemoryApiKeyStore implements ApiKeyStore {
  private readonly records = new Map<string, ApiKeyRecord>();
  private readonly listeners = new Set<(id: string) => void>();

  constructor(initial: readonly ApiKeyRecord[] = []) {
    for (const r of initial) this.records.set(r.id, structuredClone(r));
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const r = this.records.get(id);
    return r && structuredClone(r);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    this.records.set(record.id, structuredClone(record));
    this.changed(record.id);
  }

  async list(): Promise<ApiKeyRecord[]> {
    return [...this.records.values()].sort((a, b) => a.id.localeCompare(b.id)).map((r) => structuredClone(r));
  }

  async revoke(id: string): Promise<boolean> {
    const r = this.records.get(id);
    if (!r) return false;
    r.revoked = true;
    this.changed(id);
    return true;
  }

  onChange(listener: (id: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(id: string): void {
    for (const l of this.listeners) l(id);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
