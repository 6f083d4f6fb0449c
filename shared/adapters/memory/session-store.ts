import type { BackendSessionRecord, SessionRecord, SessionStore } from '../../ports/session-store.js';

/** In-process SessionStore for a single node. Expired records are dropped lazily and by a sweep. */
export class MemorySessionStore implements SessionStore {
  private readonly records = new Map<string, { record: SessionRecord; expiresAt: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), 60_000).unref();
  }

  async put(record: SessionRecord, ttlMs: number): Promise<void> {
    this.records.set(record.id, { record: structuredClone(record), expiresAt: this.now() + ttlMs });
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const e = this.live(id);
    return e ? structuredClone(e.record) : undefined;
  }

  async touch(id: string, ttlMs: number): Promise<boolean> {
    const e = this.live(id);
    if (!e) return false;
    e.expiresAt = this.now() + ttlMs;
    e.record.lastSeenAt = this.now();
    return true;
  }

  async setBackendSession(
    id: string,
    server: string,
    backend: BackendSessionRecord | undefined,
  ): Promise<void> {
    const e = this.live(id);
    if (!e) return;
    if (backend) e.record.backendSessions[server] = structuredClone(backend);
    else delete e.record.backendSessions[server];
  }

  async delete(id: string): Promise<void> {
    this.records.delete(id);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.records.clear();
  }

  private live(id: string) {
    const e = this.records.get(id);
    if (e && e.expiresAt <= this.now()) {
      this.records.delete(id);
      return undefined;
    }
    return e;
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, e] of this.records) if (e.expiresAt <= t) this.records.delete(id);
  }
}
