import type { ServerConfig } from '../../config/schema.js';
import {
  RegistryConflictError,
  type RegistryChange,
  type RegistryEntry,
  type RegistryStore,
  type RegistryVersion,
  type WriteOptions,
} from '../../ports/registry-store.js';
import { serverId } from '../../mcp/server-versions.js';

/** In-process RegistryStore for a node that keeps nothing (`store.kind: memory`). */
export class MemoryRegistryStore implements RegistryStore {
  private readonly entries = new Map<string, RegistryEntry>();
  /** Every version per name; the last one tells whether the server is live or deleted. */
  private readonly historyOf = new Map<string, RegistryVersion[]>();
  private readonly listeners = new Set<(c: RegistryChange) => void>();

  async list(): Promise<RegistryEntry[]> {
    return [...this.entries.values()]
      .sort((a, b) => (serverId(a.server) < serverId(b.server) ? -1 : 1))
      .map((e) => structuredClone(e));
  }

  async get(name: string): Promise<RegistryEntry | undefined> {
    const e = this.entries.get(name);
    return e ? structuredClone(e) : undefined;
  }

  async versions(name: string): Promise<RegistryEntry[]> {
    return (await this.list()).filter((e) => e.server.name === name);
  }

  async upsert(server: ServerConfig, by: string, options: WriteOptions = {}): Promise<RegistryEntry> {
    this.check(serverId(server), options);
    const entry: RegistryEntry = {
      server: structuredClone(server),
      version: this.lastVersion(serverId(server)) + 1,
      updatedAt: Date.now(),
      updatedBy: by,
    };
    this.entries.set(serverId(server), entry);
    this.record({
      name: serverId(server),
      version: entry.version,
      op: 'upsert',
      server: structuredClone(server),
      changedAt: entry.updatedAt,
      changedBy: by,
    });
    this.emit({ type: 'upsert', entry: structuredClone(entry) });
    return structuredClone(entry);
  }

  async delete(name: string, by: string, options: WriteOptions = {}): Promise<boolean> {
    this.check(name, options);
    if (!this.entries.has(name)) return false;
    this.entries.delete(name);
    const version = this.lastVersion(name) + 1;
    this.record({ name, version, op: 'delete', changedAt: Date.now(), changedBy: by });
    this.emit({ type: 'delete', name, version });
    return true;
  }

  async history(name: string): Promise<RegistryVersion[]> {
    return structuredClone(this.historyOf.get(name) ?? []);
  }

  watch(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private check(name: string, { expectedVersion }: WriteOptions): void {
    if (expectedVersion === undefined) return;
    const actual = this.entries.get(name)?.version ?? 0;
    if (actual !== expectedVersion) throw new RegistryConflictError(name, expectedVersion, actual);
  }

  private lastVersion(name: string): number {
    return this.historyOf.get(name)?.at(-1)?.version ?? 0;
  }

  private record(v: RegistryVersion): void {
    const list = this.historyOf.get(v.name) ?? [];
    list.push(v);
    this.historyOf.set(v.name, list);
  }

  private emit(change: RegistryChange): void {
    for (const l of this.listeners) l(change);
  }
}
