/**
 * FederationBus on NATS (the maintained v3 client): core subjects for publish/subscribe, JetStream KV for
 * this region's buckets, and stream mirrors for the other regions' buckets.
 *
 * Every read (own bucket or mirror) goes through a plain ordered consumer on the bucket's stream (filter
 * `$KV.<bucket>.…`, deliver last per subject). On server 2.9 the KV client's get and watch on a mirror
 * opened across domains return nothing while the origin region is down, and a consumer on the local
 * mirror stream delivers everything (DESIGN-NOTES): one read path serves both. Writes use the KV client.
 */
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  DeliverPolicy,
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import {
  checkBucketName,
  checkKey,
  KvRevisionConflict,
  type BucketOptions,
  type BusConnectionState,
  type BusMessage,
  type FederationBus,
  type KvBucket,
  type KvEntry,
  type KvListener,
  type KvReader,
} from '../../ports/federation-bus.js';

export interface NatsBusOptions {
  /** nats://host:port, one or several servers of this region. */
  servers: string | string[];
  /** The default bucket behind kvPut/kvGet/... */
  bucket?: string;
  /** Connection name shown by the server (monitoring). */
  name?: string;
  /** Pause between reconnect attempts; reconnecting never gives up. */
  reconnectTimeWaitMs?: number;
}

const PULL = { expires: 3_000, idle_heartbeat: 1_000 };
const SNAPSHOT_STALL_MS = 1_000;
const SNAPSHOT_ATTEMPTS = 4;
/** A mirror's window: hours of heartbeats of a few dozen gateways; the oldest messages go first. */
const MIRROR_MAX_MSGS = 1_000_000;
const MIRROR_MAX_BYTES = 512 * 1024 * 1024;
/** This region's bucket of mirror-repair locks (key: the mirror's stream), and when a lock is stale. */
const REPAIR_LOCKS = 'mirror_repair';
const REPAIR_LOCK_STALE_MS = 30_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NatsBus implements FederationBus {
  private readonly listeners = new Set<(s: BusConnectionState) => void>();
  private readonly buckets = new Map<string, Promise<NatsBucket>>();
  private readonly mirrors = new Map<string, Promise<StreamReader>>();
  private readonly stops = new Set<() => void>();
  private state: BusConnectionState = 'up';

  private constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    private readonly defaultBucketName: string,
  ) {
    void this.followStatus();
  }

  /** Connects (failing at once if no server answers) and checks that JetStream is enabled there. */
  static async connect(options: NatsBusOptions): Promise<NatsBus> {
    const bucket = options.bucket ?? 'mcpgw';
    checkBucketName(bucket);
    const nc = await connect({
      servers: options.servers,
      name: options.name ?? 'mcpgw',
      maxReconnectAttempts: -1,
      reconnectTimeWait: options.reconnectTimeWaitMs ?? 250,
      // The degraded mode (last known registry) starts at the first missed ping, not minutes later.
      pingInterval: 2_000,
      maxPingOut: 2,
    });
    try {
      const jsm = await jetstreamManager(nc);
      return new NatsBus(nc, jetstream(nc), jsm, bucket);
    } catch (err) {
      await nc.close();
      throw new Error(`NATS at ${String(options.servers)} has no JetStream: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  get connected(): boolean {
    return this.state === 'up';
  }

  async publish(subject: string, data: unknown): Promise<void> {
    this.nc.publish(subject, encoder.encode(JSON.stringify(data)));
  }

  subscribe(pattern: string, listener: (message: BusMessage) => void): () => void {
    const sub: Subscription = this.nc.subscribe(pattern, {
      callback: (err, msg) => {
        if (err) return;
        let data: unknown;
        try {
          data = msg.json();
        } catch {
          return; // not ours: every publisher of this bus sends JSON
        }
        listener({ subject: msg.subject, data });
      },
    });
    return () => sub.unsubscribe();
  }

  async kvPut(key: string, value: unknown): Promise<number> {
    return (await this.bucket(this.defaultBucketName)).put(key, value);
  }
  async kvGet(key: string): Promise<KvEntry | undefined> {
    return (await this.bucket(this.defaultBucketName)).get(key);
  }
  async kvDelete(key: string): Promise<void> {
    return (await this.bucket(this.defaultBucketName)).delete(key);
  }
  async kvCreate(key: string, value: unknown): Promise<number> {
    return (await this.bucket(this.defaultBucketName)).create(key, value);
  }
  async kvUpdate(key: string, value: unknown, expectedRevision: number): Promise<number> {
    return (await this.bucket(this.defaultBucketName)).update(key, value, expectedRevision);
  }
  async kvWatch(prefix: string, listener: KvListener): Promise<() => void> {
    return (await this.bucket(this.defaultBucketName)).watch(prefix, listener);
  }

  async bucket(name: string, options: BucketOptions = {}): Promise<KvBucket> {
    checkBucketName(name);
    const region = options.region;
    if (region !== undefined) checkBucketName(region);
    const id = region === undefined ? name : `${name}@${region}`;
    let b = this.buckets.get(id);
    if (!b) {
      b = (async () => {
        // Another region's bucket: its domain's JetStream API, through the topology.
        const js = region === undefined ? this.js : jetstream(this.nc, { domain: region });
        const jsm = region === undefined ? this.jsm : await jetstreamManager(this.nc, { domain: region });
        const kv = await new Kvm(js).create(name, { history: options.history ?? 1 });
        return new NatsBucket(name, kv, new StreamReader(js, jsm, `KV_${name}`, name, this.stops));
      })();
      b.catch(() => this.buckets.delete(id));
      this.buckets.set(id, b);
    }
    return b;
  }

  async mirror(bucket: string, region: string): Promise<KvReader> {
    checkBucketName(bucket);
    checkBucketName(region);
    const stream = `KV_${bucket}_mirror`;
    let m = this.mirrors.get(stream);
    if (!m) {
      m = (async () => {
        try {
          await this.jsm.streams.info(stream);
        } catch (err) {
          if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
          await this.addMirror(stream, bucket, region);
        }
        const reader = this.reader(stream, bucket);
        reader.repair = (young) => this.repairMirror(stream, bucket, region, young);
        reader.originEntries = (prefix) => this.originEntries(bucket, region, prefix);
        return reader;
      })();
      m.catch(() => this.mirrors.delete(stream));
      this.mirrors.set(stream, m);
    }
    return m;
  }

  /**
   * The mirror keeps its own copy of the origin: a region's last known registry survives that region
   * going away. It is created even before the origin exists. It keeps a window of history rather than
   * one value per key: with `max_msgs_per_subject: 1`, server 2.9.10 was seen keeping a key's first
   * value and discarding every newer one. Publishers rewrite every key well within the window
   * (RegistryPublisher republishes everything every few minutes); reads take the last value per key.
   */
  private async addMirror(stream: string, bucket: string, region: string): Promise<void> {
    await this.jsm.streams.add({
      name: stream,
      mirror: { name: `KV_${bucket}`, domain: region },
      max_msgs: MIRROR_MAX_MSGS,
      max_bytes: MIRROR_MAX_BYTES,
      storage: StorageType.File,
      allow_rollup_hdrs: true,
      deny_delete: true,
    });
  }

  /**
   * Seen on server 2.9 after the mirror's own server was killed and restarted: the mirror goes on
   * receiving but keeps old values. It is rebuilt only when the origin answers, so a region that is
   * really gone keeps its last known state.
   */
  private async repairMirror(
    stream: string,
    bucket: string,
    region: string,
    unlessYoungerThanMs?: number,
  ): Promise<boolean> {
    // One repair at a time per mirror across the region's gateways: server 2.9.10 was seen leaving a
    // mirror that two gateways deleted and re-created at once empty and stuck for good.
    const lock = await this.takeRepairLock(stream);
    if (lock === undefined) return false;
    try {
      if (unlessYoungerThanMs !== undefined) {
        const si = await this.jsm.streams.info(stream).catch(() => undefined);
        if (si && Date.now() - Date.parse(si.created) < unlessYoungerThanMs) return false;
      }
      return await this.rebuildMirror(stream, bucket, region);
    } finally {
      await lock.delete(stream).catch(() => {});
    }
  }

  /** The region's lock on rebuilding a mirror, or undefined while another gateway holds it. */
  private async takeRepairLock(stream: string): Promise<KvBucket | undefined> {
    const locks = await this.bucket(REPAIR_LOCKS);
    const mine = { at: Date.now() };
    try {
      await locks.create(stream, mine);
      return locks;
    } catch (err) {
      if (!(err instanceof KvRevisionConflict)) throw err;
    }
    // Held: by a live repair, or by one whose gateway died before it let go.
    const held = await locks.get(stream);
    const at = (held?.value as { at?: unknown } | undefined)?.at;
    if (held && typeof at === 'number' && Date.now() - at < REPAIR_LOCK_STALE_MS) return undefined;
    try {
      if (held) await locks.update(stream, mine, held.revision);
      else await locks.create(stream, mine);
      return locks;
    } catch (err) {
      if (err instanceof KvRevisionConflict) return undefined;
      throw err;
    }
  }

  private async rebuildMirror(stream: string, bucket: string, region: string): Promise<boolean> {
    let messages: number;
    try {
      const origin = await jetstreamManager(this.nc, { domain: region, timeout: 500 });
      messages = (await origin.streams.info(`KV_${bucket}`)).state.messages;
    } catch {
      return false;
    }
    await this.jsm.streams.delete(stream).catch(() => {});
    await this.addMirror(stream, bucket, region);
    // Readers must not take the empty new mirror for the region's state: wait for it to catch up.
    for (const deadline = Date.now() + 2_000; Date.now() < deadline;) {
      const si = await this.jsm.streams.info(stream);
      if (si.mirror?.lag === 0 && si.state.messages >= messages) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  /**
   * Request/reply only (a stream info listing the subjects under the prefix, then one direct get per
   * subject), no consumer: it works across domains whatever state the local mirror is in.
   */
  private async originEntries(bucket: string, region: string, prefix: string): Promise<KvEntry[]> {
    const origin = await jetstreamManager(this.nc, { domain: region, timeout: 1_000 });
    const subjectPrefix = `$KV.${bucket}.`;
    const info = await origin.streams.info(`KV_${bucket}`, { subjects_filter: `${subjectPrefix}>` });
    const subjects = Object.keys(info.state.subjects ?? {}).filter((s) =>
      s.slice(subjectPrefix.length).startsWith(prefix),
    );
    const out: KvEntry[] = [];
    await Promise.all(
      subjects.map(async (subject) => {
        const sm = await origin.streams.getMessage(`KV_${bucket}`, { last_by_subj: subject });
        if (!sm) return;
        const op = sm.header?.get('KV-Operation');
        if (op === 'DEL' || op === 'PURGE') return;
        out.push({ key: subject.slice(subjectPrefix.length), value: parse(sm.data), revision: sm.seq });
      }),
    );
    return out;
  }

  onConnection(listener: (state: BusConnectionState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Deletes a bucket of this region, or a mirror stream (`KV_<bucket>_mirror`): for tests and tooling. */
  async destroyStream(stream: string): Promise<void> {
    try {
      await this.jsm.streams.delete(stream);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    }
    this.buckets.delete(stream.replace(/^KV_/, ''));
    this.mirrors.delete(stream);
  }

  async close(): Promise<void> {
    for (const stop of this.stops) stop();
    this.stops.clear();
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }

  private reader(stream: string, bucket: string): StreamReader {
    return new StreamReader(this.js, this.jsm, stream, bucket, this.stops);
  }

  private async followStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      const next: BusConnectionState | undefined =
        s.type === 'disconnect' ? 'down' : s.type === 'reconnect' ? 'up' : undefined;
      if (next === undefined || next === this.state) continue;
      this.state = next;
      for (const l of this.listeners) l(next);
    }
  }
}

class NatsBucket implements KvBucket {
  constructor(
    readonly name: string,
    private readonly kv: KV,
    private readonly read: StreamReader,
  ) {}

  async put(key: string, value: unknown): Promise<number> {
    checkKey(key);
    return this.kv.put(key, encoder.encode(JSON.stringify(value)));
  }

  async create(key: string, value: unknown): Promise<number> {
    checkKey(key);
    try {
      return await this.kv.create(key, encoder.encode(JSON.stringify(value)));
    } catch (err) {
      throw isWrongSequence(err) ? new KvRevisionConflict(key, undefined, { cause: err }) : err;
    }
  }

  async update(key: string, value: unknown, expectedRevision: number): Promise<number> {
    checkKey(key);
    if (!(expectedRevision >= 1)) throw new KvRevisionConflict(key, expectedRevision);
    try {
      return await this.kv.update(key, encoder.encode(JSON.stringify(value)), expectedRevision);
    } catch (err) {
      throw isWrongSequence(err) ? new KvRevisionConflict(key, expectedRevision, { cause: err }) : err;
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.kv.delete(key);
  }

  async history(key: string): Promise<KvEntry[]> {
    checkKey(key);
    const out: KvEntry[] = [];
    const it = await this.kv.history({ key });
    for await (const e of it) {
      out.push({
        key,
        value: e.operation === 'PUT' ? parse(e.value) : undefined,
        revision: e.revision,
      });
    }
    return out.sort((a, b) => a.revision - b.revision);
  }

  async get(key: string): Promise<KvEntry | undefined> {
    return this.read.get(key);
  }
  entries(prefix: string): Promise<KvEntry[]> {
    return this.read.entries(prefix);
  }
  watch(prefix: string, listener: KvListener): Promise<() => void> {
    return this.read.watch(prefix, listener);
  }
}

function isWrongSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** Reads a KV stream (a bucket's own, or a mirror of one) with plain consumers, as KV entries. */
class StreamReader implements KvReader {
  private readonly subjectPrefix: string;
  repair?: (unlessYoungerThanMs?: number) => Promise<boolean>;
  originEntries?: (prefix: string) => Promise<KvEntry[]>;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    bucket: string,
    private readonly stops: Set<() => void>,
  ) {
    this.subjectPrefix = `$KV.${bucket}.`;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    checkKey(key);
    const sm = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.subjectPrefix + key });
    if (!sm) return undefined;
    const op = sm.header?.get('KV-Operation');
    if (op === 'DEL' || op === 'PURGE') return undefined;
    return { key, value: parse(sm.data), revision: sm.seq };
  }

  async entries(prefix: string): Promise<KvEntry[]> {
    const out = new Map<string, KvEntry>();
    const stop = await this.watch(prefix, (key, entry) => {
      if (entry) out.set(key, entry);
      else out.delete(key);
    });
    stop();
    return [...out.values()];
  }

  /**
   * Right after a server restart, a consumer's first pull is sometimes not answered for seconds (seen
   * on 2.9): a snapshot that stalls is abandoned and read again with a fresh consumer.
   */
  async watch(prefix: string, listener: KvListener): Promise<() => void> {
    for (let attempt = 1; ; attempt++) {
      const stop = await this.watchOnce(prefix, listener, SNAPSHOT_STALL_MS * attempt);
      if (stop) return stop;
      if (attempt === SNAPSHOT_ATTEMPTS)
        throw new Error(`stream ${this.stream}: no snapshot after ${attempt} attempts`);
    }
  }

  private async watchOnce(
    prefix: string,
    listener: KvListener,
    stallMs: number,
  ): Promise<(() => void) | undefined> {
    const consumer = await this.js.consumers.get(this.stream, this.consumerOptions(prefix, 30_000));
    const pending = (await consumer.info(true)).num_pending;
    // Short pulls with heartbeats: a pull lost to a server restart is noticed (and the ordered consumer
    // recreated) within seconds rather than the client's default half minute.
    const messages = await consumer.consume(PULL);
    let initialized!: () => void;
    const snapshot = new Promise<void>((r) => (initialized = r));
    if (pending === 0) initialized();
    // The snapshot is staged until complete, so an abandoned attempt delivers nothing.
    let staged: Array<[string, KvEntry | undefined]> | undefined = pending === 0 ? undefined : [];
    let abandoned = false;
    void (async () => {
      for await (const m of messages) {
        if (abandoned) break;
        const e = this.toEntry(m, prefix);
        if (e) {
          if (staged) staged.push([e.key, e.entry]);
          else listener(e.key, e.entry);
        }
        if (m.info.pending === 0 && staged) {
          const s = staged;
          staged = undefined;
          for (const [k, v] of s) listener(k, v);
          initialized();
        }
      }
    })().catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<'stalled'>((r) => (timer = setTimeout(() => r('stalled'), stallMs)));
    const outcome = await Promise.race([snapshot, stalled]);
    clearTimeout(timer);
    if (outcome === 'stalled') {
      abandoned = true;
      messages.stop();
      return undefined;
    }
    const stop = () => {
      this.stops.delete(stop);
      messages.stop();
    };
    this.stops.add(stop);
    return stop;
  }

  /** A prefix ending at a token boundary narrows the consumer's filter; any other is filtered here. */
  private consumerOptions(prefix: string, inactiveMs: number) {
    const tokenPrefix =
      prefix === '' || prefix.endsWith('.') ? prefix : prefix.slice(0, prefix.lastIndexOf('.') + 1);
    return {
      filter_subjects: `${this.subjectPrefix}${tokenPrefix}>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
      inactive_threshold: inactiveMs,
    };
  }

  private toEntry(m: JsMsg, prefix: string): { key: string; entry: KvEntry | undefined } | undefined {
    const key = m.subject.slice(this.subjectPrefix.length);
    if (!key.startsWith(prefix)) return undefined;
    const op = m.headers?.get('KV-Operation');
    if (op === 'DEL' || op === 'PURGE') return { key, entry: undefined };
    return { key, entry: { key, value: parse(m.data), revision: m.seq } };
  }
}

function parse(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}
