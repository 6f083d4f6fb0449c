/**
 * ResponseCache in process memory: an LRU bounded by entry count, each entry dropped after its keep time.
 * It is also the first tier in front of a shared (Redis) cache.
 */
import type { CachedResponse, ResponseCache } from '../../ports/response-cache.js';

export class MemoryResponseCache implements ResponseCache {
  /** Map order is recency order: a hit moves the entry to the end, eviction takes the first. */
  private readonly entries = new Map<string, { value: CachedResponse; dropAt: number }>();

  constructor(private readonly maxEntries = 10_000) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new RangeError(`maxEntries must be a positive integer: ${maxEntries}`);
  }

  get size(): number {
    return this.entries.size;
  }

  async get(key: string): Promise<CachedResponse | undefined> {
    return this.getNow(key);
  }

  /** The synchronous lookup the first tier uses on the hot path. */
  getNow(key: string): CachedResponse | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.dropAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value;
  }

  async set(key: string, value: CachedResponse, keepMs: number): Promise<void> {
    if (!(keepMs > 0)) return;
    this.entries.delete(key);
    this.entries.set(key, { value, dropAt: Date.now() + keepMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}
