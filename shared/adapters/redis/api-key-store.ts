/**
 * ApiKeyStore on Redis, so that every edge sees a key created or revoked on any of them (or by
 * `mcpgw keys`). One hash `<prefix>:apikeys` (field = key id, value = the record as JSON), and a pub/sub
 * channel `<prefix>:apikeys:changed` that carries the id of each changed record.
 *
 * Each edge keeps records it looked up for `cacheTtlMs` (an authentication must not cost a round trip per
 * request) and drops one the moment its change is published. The local cache is only used while the
 * subscription is live: after a reconnection everything cached is dropped, since messages may have been
 * missed, and the TTL bounds what a silently lost message could cost.
 */
import type { ApiKeyRecord, ApiKeyStore } from '../../ports/api-key-store.js';
import { keyPrefixOf, RedisConnection, type RedisAdapterOptions } from './connection.js';

export interface RedisApiKeyStoreOptions extends RedisAdapterOptions {
  /** How long a looked-up record is served locally; 0 reads Redis on every lookup. Default 30 s. */
  cacheTtlMs?: number;
}

export class RedisApiKeyStore implements ApiKeyStore {
  private readonly client: RedisConnection;
  /** A subscribed connection can do nothing else. */
  private readonly subscriber: RedisConnection;
  private readonly hashKey: string;
  private readonly channel: string;
  private readonly ttlMs: number;
  private readonly cache = new Map<string, { record: ApiKeyRecord | undefined; at: number }>();
  private readonly listeners = new Set<(id: string) => void>();
  /** Whether change messages are arriving now (only then may a record be served from the cache). */
  private subscribed = false;
  private everSubscribed = false;
  private readonly ready: Promise<void>;

  constructor(url: string, options: RedisApiKeyStoreOptions = {}) {
    const prefix = keyPrefixOf(options);
    this.hashKey = `${prefix}:apikeys`;
    this.channel = `${prefix}:apikeys:changed`;
    this.ttlMs = options.cacheTtlMs ?? 30_000;
    this.client = new RedisConnection(url);
    this.subscriber = new RedisConnection(url);
    const sub = this.subscriber.client;
    sub.on('message', (channel: string, id: string) => {
      if (channel !== this.channel) return;
      this.cache.delete(id);
      for (const l of this.listeners) l(id);
    });
    // Whatever was published while the connection was down is lost: forget everything cached then.
    sub.on('close', () => {
      this.subscribed = false;
      this.cache.clear();
    });
    sub.on('ready', () => {
      if (this.everSubscribed) this.subscribed = true;
    });
    this.ready = sub.subscribe(this.channel).then(
      () => {
        this.everSubscribed = true;
        this.subscribed = true;
      },
      () => {},
    );
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const hit = this.cache.get(id);
    if (hit && this.subscribed && Date.now() - hit.at < this.ttlMs)
      return hit.record && structuredClone(hit.record);
    const at = Date.now();
    const json = await this.client.client.hget(this.hashKey, id);
    const record = json ? (JSON.parse(json) as ApiKeyRecord) : undefined;
    if (this.ttlMs > 0 && this.subscribed) {
      this.cache.set(id, { record, at });
      // Bounded: ids are attacker-chosen, so unknown ones must not grow the cache without limit.
      if (this.cache.size > 10_000) this.cache.delete(this.cache.keys().next().value!);
    }
    return record && structuredClone(record);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    await this.client.client.hset(this.hashKey, record.id, JSON.stringify(record));
    await this.announce(record.id);
  }

  async list(): Promise<ApiKeyRecord[]> {
    const all = await this.client.client.hgetall(this.hashKey);
    return Object.values(all)
      .map((j) => JSON.parse(j) as ApiKeyRecord)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  async revoke(id: string): Promise<boolean> {
    const json = await this.client.client.hget(this.hashKey, id);
    if (!json) return false;
    await this.client.client.hset(this.hashKey, id, JSON.stringify({ ...JSON.parse(json), revoked: true }));
    await this.announce(id);
    return true;
  }

  onChange(listener: (id: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once this store receives change messages (and so may cache). */
  whenSubscribed(): Promise<void> {
    return this.ready;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all([this.subscriber.release(), this.client.release()]);
  }

  private async announce(id: string): Promise<void> {
    // Dropped here before publishing: this process must not serve the old record even for a moment.
    this.cache.delete(id);
    await this.client.client.publish(this.channel, id);
  }
}
