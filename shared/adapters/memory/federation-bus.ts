import {
  checkBucketName,
  checkKey,
  KvRevisionConflict,
  subjectMatches,
  type BucketOptions,
  type BusConnectionState,
  type BusMessage,
  type FederationBus,
  type KvBucket,
  type KvEntry,
  type KvListener,
  type KvReader,
} from '../../ports/federation-bus.js';

/**
 * What several in-process buses share: subjects and buckets. One fabric stands for the whole federation
 * (every region's buckets in one place), so a mirror is a read-only view of the bucket itself.
 */
export class InProcessFabric {
  readonly subs = new Set<{ pattern: string; listener: (m: BusMessage) => void }>();
  private readonly buckets = new Map<string, MemoryBucket>();

  bucket(name: string, options: BucketOptions = {}): MemoryBucket {
    checkBucketName(name);
    let b = this.buckets.get(name);
    if (!b) this.buckets.set(name, (b = new MemoryBucket(name, options.history ?? 1)));
    return b;
  }
}

/** In-process FederationBus for a single node: delivery is asynchronous (a microtask), as on a real bus. */
export class InProcessBus implements FederationBus {
  readonly connected = true;
  private readonly mine = new Set<{ pattern: string; listener: (m: BusMessage) => void }>();
  private readonly stops = new Set<() => void>();
  private readonly defaultBucket: MemoryBucket;
  private closed = false;

  constructor(
    private readonly fabric = new InProcessFabric(),
    options: { bucket?: string } = {},
  ) {
    this.defaultBucket = fabric.bucket(options.bucket ?? 'mcpgw');
  }

  async publish(subject: string, data: unknown): Promise<void> {
    this.open();
    const msg = { subject, data: structuredClone(data) };
    for (const s of this.fabric.subs)
      if (subjectMatches(s.pattern, subject)) queueMicrotask(() => s.listener(msg));
  }

  subscribe(pattern: string, listener: (message: BusMessage) => void): () => void {
    this.open();
    const sub = { pattern, listener };
    this.fabric.subs.add(sub);
    this.mine.add(sub);
    return () => {
      this.fabric.subs.delete(sub);
      this.mine.delete(sub);
    };
  }

  kvPut(key: string, value: unknown): Promise<number> {
    return this.defaultBucket.put(key, value);
  }
  kvGet(key: string): Promise<KvEntry | undefined> {
    return this.defaultBucket.get(key);
  }
  kvDelete(key: string): Promise<void> {
    return this.defaultBucket.delete(key);
  }
  kvCreate(key: string, value: unknown): Promise<number> {
    return this.defaultBucket.create(key, value);
  }
  kvUpdate(key: string, value: unknown, expectedRevision: number): Promise<number> {
    return this.defaultBucket.update(key, value, expectedRevision);
  }
  kvWatch(prefix: string, listener: KvListener): Promise<() => void> {
    return this.watchTracked(this.defaultBucket, prefix, listener);
  }

  async bucket(name: string, options?: BucketOptions): Promise<KvBucket> {
    this.open();
    const b = this.fabric.bucket(name, options);
    // Watches opened through this bus end with it, as a NATS connection's consumers do.
    return {
      name: b.name,
      get: (k) => b.get(k),
      entries: (p) => b.entries(p),
      watch: (p, l) => this.watchTracked(b, p, l),
      put: (k, v) => b.put(k, v),
      create: (k, v) => b.create(k, v),
      update: (k, v, r) => b.update(k, v, r),
      delete: (k) => b.delete(k),
      history: (k) => b.history(k),
    };
  }

  async mirror(bucket: string, _region: string): Promise<KvReader> {
    const b = await this.bucket(bucket);
    return { get: b.get, entries: b.entries, watch: b.watch };
  }

  onConnection(_listener: (state: BusConnectionState) => void): () => void {
    return () => {};
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.mine) this.fabric.subs.delete(s);
    this.mine.clear();
    for (const stop of this.stops) stop();
    this.stops.clear();
  }

  private async watchTracked(b: MemoryBucket, prefix: string, listener: KvListener): Promise<() => void> {
    this.open();
    const stop = b.watch(prefix, listener);
    const tracked = () => {
      stop();
      this.stops.delete(tracked);
    };
    this.stops.add(tracked);
    return tracked;
  }

  private open(): void {
    if (this.closed) throw new Error('the federation bus is closed');
  }
}

class MemoryBucket {
  private readonly kv = new Map<string, KvEntry>();
  private readonly kept = new Map<string, KvEntry[]>();
  private readonly watchers = new Set<{ prefix: string; listener: KvListener }>();
  private revision = 0;

  constructor(
    readonly name: string,
    private readonly historyLength = 1,
  ) {}

  async history(key: string): Promise<KvEntry[]> {
    checkKey(key);
    return structuredClone(this.kept.get(key) ?? []);
  }

  async put(key: string, value: unknown): Promise<number> {
    checkKey(key);
    return this.write(key, value);
  }

  async create(key: string, value: unknown): Promise<number> {
    checkKey(key);
    if (this.kv.has(key)) throw new KvRevisionConflict(key, undefined);
    return this.write(key, value);
  }

  async update(key: string, value: unknown, expectedRevision: number): Promise<number> {
    checkKey(key);
    if (this.kv.get(key)?.revision !== expectedRevision) throw new KvRevisionConflict(key, expectedRevision);
    return this.write(key, value);
  }

  async get(key: string): Promise<KvEntry | undefined> {
    checkKey(key);
    const e = this.kv.get(key);
    return e ? structuredClone(e) : undefined;
  }

  async entries(prefix: string): Promise<KvEntry[]> {
    return [...this.kv.values()].filter((e) => e.key.startsWith(prefix)).map((e) => structuredClone(e));
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    // A delete is a write too (NATS writes a marker), so revisions keep increasing across it.
    this.keep({ key, value: undefined, revision: ++this.revision });
    if (this.kv.delete(key)) this.notify(key, undefined);
  }

  watch(prefix: string, listener: KvListener): () => void {
    for (const [k, e] of this.kv) if (k.startsWith(prefix)) listener(k, structuredClone(e));
    const w = { prefix, listener };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  private write(key: string, value: unknown): number {
    const entry = { key, value: structuredClone(value), revision: ++this.revision };
    this.kv.set(key, entry);
    this.keep(structuredClone(entry));
    this.notify(key, entry);
    return entry.revision;
  }

  private keep(entry: KvEntry): void {
    const list = this.kept.get(entry.key) ?? [];
    list.push(entry);
    if (list.length > this.historyLength) list.splice(0, list.length - this.historyLength);
    this.kept.set(entry.key, list);
  }

  private notify(key: string, entry: KvEntry | undefined): void {
    for (const w of this.watchers)
      if (key.startsWith(w.prefix)) queueMicrotask(() => w.listener(key, entry && structuredClone(entry)));
  }
}
