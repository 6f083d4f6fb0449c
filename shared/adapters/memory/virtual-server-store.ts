/** In-process VirtualServerStore for a node that keeps nothing (`store.kind: memory`). */
import type { VirtualServerConfig } from '../../config/virtual-schema.js';
import {
  VirtualServerConflictError,
  type VirtualServerEntry,
  type VirtualServerStore,
  type VirtualServerVersion,
} from '../../ports/virtual-server-store.js';

export class MemoryVirtualServerStore implements VirtualServerStore {
  private readonly live = new Map<string, VirtualServerEntry>();
  private readonly past = new Map<string, VirtualServerVersion[]>();
  private readonly listeners = new Set<(name: string) => void>();

  async list(): Promise<VirtualServerEntry[]> {
    return [...this.live.values()]
      .sort((a, b) => (a.virtualServer.name < b.virtualServer.name ? -1 : 1))
      .map((e) => structuredClone(e));
  }

  async get(name: string): Promise<VirtualServerEntry | undefined> {
    const e = this.live.get(name);
    return e && structuredClone(e);
  }

  async put(v: VirtualServerConfig, by: string, expectedVersion?: number): Promise<VirtualServerEntry> {
    this.check(v.name, expectedVersion);
    const entry: VirtualServerEntry = {
      virtualServer: structuredClone(v),
      version: this.last(v.name) + 1,
      updatedAt: Date.now(),
      updatedBy: by,
    };
    this.live.set(v.name, entry);
    this.record({
      name: v.name,
      version: entry.version,
      op: 'upsert',
      virtualServer: structuredClone(v),
      changedAt: entry.updatedAt,
      changedBy: by,
    });
    return structuredClone(entry);
  }

  async delete(name: string, by: string, expectedVersion?: number): Promise<boolean> {
    this.check(name, expectedVersion);
    if (!this.live.delete(name)) return false;
    this.record({ name, version: this.last(name) + 1, op: 'delete', changedAt: Date.now(), changedBy: by });
    return true;
  }

  async history(name: string): Promise<VirtualServerVersion[]> {
    return structuredClone(this.past.get(name) ?? []);
  }

  watch(listener: (name: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private check(name: string, expected: number | undefined): void {
    if (expected === undefined) return;
    const actual = this.live.get(name)?.version ?? 0;
    if (actual !== expected) throw new VirtualServerConflictError(name, expected, actual);
  }

  private last(name: string): number {
    return this.past.get(name)?.at(-1)?.version ?? 0;
  }

  private record(v: VirtualServerVersion): void {
    const versions = this.past.get(v.name);
    if (versions) versions.push(v);
    else this.past.set(v.name, [v]);
    for (const l of this.listeners) l(v.name);
  }
}
