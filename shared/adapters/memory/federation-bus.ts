import {
  subjectMatches,
  type BusMessage,
  type FederationBus,
  type KvEntry,
} from '../../ports/federation-bus.js';

/** In-process FederationBus for a single node: delivery is asynchronous (a microtask), as on a real bus. */
export class InProcessBus implements FederationBus {
  private readonly subs = new Set<{ pattern: string; listener: (m: BusMessage) => void }>();
  private readonly kv = new Map<string, KvEntry>();
  private readonly watchers = new Set<{
    prefix: string;
    listener: (key: string, e: KvEntry | undefined) => void;
  }>();
  private revision = 0;

  async publish(subject: string, data: unknown): Promise<void> {
    const msg = { subject, data: structuredClone(data) };
    for (const s of this.subs) if (subjectMatches(s.pattern, subject)) queueMicrotask(() => s.listener(msg));
  }

  subscribe(pattern: string, listener: (message: BusMessage) => void): () => void {
    const sub = { pattern, listener };
    this.subs.add(sub);
    return () => this.subs.delete(sub);
  }

  async kvPut(key: string, value: unknown): Promise<number> {
    const entry = { key, value: structuredClone(value), revision: ++this.revision };
    this.kv.set(key, entry);
    this.notify(key, entry);
    return entry.revision;
  }

  async kvGet(key: string): Promise<KvEntry | undefined> {
    const e = this.kv.get(key);
    return e ? structuredClone(e) : undefined;
  }

  async kvDelete(key: string): Promise<void> {
    if (this.kv.delete(key)) this.notify(key, undefined);
  }

  async kvWatch(
    prefix: string,
    listener: (key: string, entry: KvEntry | undefined) => void,
  ): Promise<() => void> {
    for (const [k, e] of this.kv) if (k.startsWith(prefix)) listener(k, structuredClone(e));
    const w = { prefix, listener };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  async close(): Promise<void> {
    this.subs.clear();
    this.watchers.clear();
  }

  private notify(key: string, entry: KvEntry | undefined): void {
    for (const w of this.watchers)
      if (key.startsWith(w.prefix)) queueMicrotask(() => w.listener(key, entry && structuredClone(entry)));
  }
}
