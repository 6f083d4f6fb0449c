import type { ServerConfig } from '../../config/schema.js';
import type { RegistryChange, RegistryEntry, RegistryStore } from '../../ports/registry-store.js';

/** In-process RegistryStore, seeded from the config file on a single node. */
export class MemoryRegistryStore implements RegistryStore {
  private readonly entries = new Map<string, RegistryEntry>();
  private readonly listeners = new Set<(c: RegistryChange) => void>();

  async list(): Promise<RegistryEntry[]> {
    return [...this.entries.values()].map((e) => structuredClone(e));
  }

  async get(name: string): Promise<RegistryEntry | undefined> {
    const e = this.entries.get(name);
    return e ? structuredClone(e) : undefined;
  }

  async upsert(server: ServerConfig, by: string): Promise<RegistryEntry> {
    const prev = this.entries.get(server.name);
    const entry: RegistryEntry = {
      server: structuredClone(server),
      version: (prev?.version ?? 0) + 1,
      updatedAt: Date.now(),
      updatedBy: by,
    };
    this.entries.set(server.name, entry);
    this.emit({ type: 'upsert', entry: structuredClone(entry) });
    return structuredClone(entry);
  }

  async delete(name: string, _by: string): Promise<boolean> {
    const prev = this.entries.get(name);
    if (!prev) return false;
    this.entries.delete(name);
    this.emit({ type: 'delete', name, version: prev.version + 1 });
    return true;
  }

  watch(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private emit(change: RegistryChange): void {
    for (const l of this.listeners) l(change);
  }
}
