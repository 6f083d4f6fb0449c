/**
 * FederationBus: publish/subscribe and watched key-value buckets between gateways. A single node uses the
 * in-process adapter; a cluster uses NATS JetStream KV (shared/adapters/nats), one JetStream domain per
 * region, each region's buckets mirrored into the others (docs/federation.md).
 */
export interface BusMessage {
  subject: string;
  data: unknown;
}

export interface KvEntry {
  key: string;
  value: unknown;
  /** Increases with every write to the bucket; `update` is fenced by it. */
  revision: number;
}

/** Called with the entry, or `undefined` when the key was deleted. */
export type KvListener = (key: string, entry: KvEntry | undefined) => void;

/** The read side of a bucket: one of this region's own, or this region's mirror of another region's. */
export interface KvReader {
  get(key: string): Promise<KvEntry | undefined>;
  /** Every current entry whose key starts with `prefix` (deleted keys excluded). */
  entries(prefix: string): Promise<KvEntry[]>;
  /**
   * Delivers every current entry under `prefix` to the listener, resolves once they all have been
   * delivered (the snapshot), then delivers every later change. Resolves to a stop function.
   */
  watch(prefix: string, listener: KvListener): Promise<() => void>;
  /**
   * Mirrors only: rebuilds the mirror from its origin when the origin answers, and resolves true; false
   * when the origin is unreachable, the mirror then left untouched (it is the last known state). For a
   * mirror that stopped following its origin; watches opened before must be opened again. With
   * `unlessYoungerThanMs`, a mirror (re)built less than that long ago, by any gateway of the region, is
   * left alone and false returned: the gateways of one region share its mirrors.
   */
  repair?(unlessYoungerThanMs?: number): Promise<boolean>;
  /**
   * Mirrors only: the current entries under `prefix` read straight from the origin region's bucket,
   * bypassing the mirror (revisions are comparable: a mirror keeps its origin's sequence numbers).
   * Rejects when the origin does not answer. For checking a silence the mirror may be wrong about.
   */
  originEntries?(prefix: string): Promise<KvEntry[]>;
}

/** A bucket this region writes. Keys: letters, digits and `-_=/.`; `.` separates tokens. */
export interface KvBucket extends KvReader {
  readonly name: string;
  put(key: string, value: unknown): Promise<number>;
  /** Writes only if the key holds no value (never written, or deleted); else KvRevisionConflict. */
  create(key: string, value: unknown): Promise<number>;
  /** Writes only if the key's current revision is `expectedRevision`; else KvRevisionConflict. */
  update(key: string, value: unknown, expectedRevision: number): Promise<number>;
  delete(key: string): Promise<void>;
  /**
   * The values the bucket keeps of `key` (as many as its `history`), oldest first; a delete appears as
   * an entry whose value is `undefined`. Empty for a key never written.
   */
  history(key: string): Promise<KvEntry[]>;
}

export interface BucketOptions {
  /** Values kept per key (1-64; default 1). Applies when the bucket is created; an existing one keeps its own. */
  history?: number;
  /**
   * The region (JetStream domain) the bucket lives in, when not this gateway's own: every read, watch
   * and write goes there through the NATS topology (leaf nodes or gateways), so they fail while that
   * region is unreachable. Absent: this region's bucket. The in-process bus has one region only.
   */
  region?: string;
}

/** The bus's link to its broker: `down` while disconnected (a reconnect follows with `up`). */
export type BusConnectionState = 'up' | 'down';

export interface FederationBus {
  publish(subject: string, data: unknown): Promise<void>;
  /** Subjects are dot-separated; `*` matches one token and `>` the rest. Returns an unsubscribe function. */
  subscribe(pattern: string, listener: (message: BusMessage) => void): () => void;
  /** The default bucket of this bus (kvPut/kvGet/... are shorthands for it). */
  kvPut(key: string, value: unknown): Promise<number>;
  kvGet(key: string): Promise<KvEntry | undefined>;
  kvDelete(key: string): Promise<void>;
  kvCreate(key: string, value: unknown): Promise<number>;
  kvUpdate(key: string, value: unknown, expectedRevision: number): Promise<number>;
  /** Current entries under a prefix, then every change (value undefined on delete). */
  kvWatch(prefix: string, listener: KvListener): Promise<() => void>;
  /** Opens (creating it if needed) a bucket of this region. Names: letters, digits, `-` and `_`. */
  bucket(name: string, options?: BucketOptions): Promise<KvBucket>;
  /**
   * This region's mirror of `bucket`, which lives in `region` (its JetStream domain); created if needed.
   * Reads are local, so they keep answering with the last mirrored state while `region` is unreachable.
   */
  mirror(bucket: string, region: string): Promise<KvReader>;
  /** Whether the bus currently reaches its broker. */
  readonly connected: boolean;
  /** Called on every change of `connected`. Returns an unsubscribe function. */
  onConnection(listener: (state: BusConnectionState) => void): () => void;
  close(): Promise<void>;
}

/** A create or update lost a race: the key holds another revision than the writer expected. */
export class KvRevisionConflict extends Error {
  override readonly name = 'KvRevisionConflict';
  constructor(
    readonly key: string,
    readonly expectedRevision: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      expectedRevision === undefined
        ? `kv key "${key}" already holds a value`
        : `kv key "${key}" is no longer at revision ${expectedRevision}`,
      options,
    );
  }
}

const BUCKET_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const KEY = /^[-/_=.A-Za-z0-9]+$/;

/** Throws a RangeError naming the problem when a bucket name is not portable across adapters. */
export function checkBucketName(name: string): void {
  if (!BUCKET_NAME.test(name))
    throw new RangeError(`bucket name "${name}": letters, digits, "-" and "_" only, 1 to 64 characters`);
}

/** Throws a RangeError naming the problem when a key is not portable across adapters. */
export function checkKey(key: string): void {
  if (!KEY.test(key) || key.startsWith('.') || key.endsWith('.') || key.includes('..'))
    throw new RangeError(`kv key "${key}": letters, digits and "-/_=." only, with no empty "." token`);
}

/** Matches a NATS-style subject against a pattern with `*` and `>` wildcards. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
