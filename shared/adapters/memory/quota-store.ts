/**
 * In-process QuotaStore: the same GCRA and lease rules as the Redis script, for a single node, for the
 * local fallback while Redis is away, and for tests (the clock is injectable).
 */
import type {
  ConcurrencyOutcome,
  LeaseRef,
  QuotaDecision,
  QuotaRequest,
  QuotaStore,
  RateOutcome,
} from '../../ports/quota-store.js';

/** Keys untouched this long after their state ran out are swept (the map must not grow without end). */
const SWEEP_EVERY_MS = 30_000;

export class MemoryQuotaStore implements QuotaStore {
  /** Theoretical arrival time (ms) per rate key, and when it stops mattering. */
  private readonly tats = new Map<string, number>();
  /** Lease id -> expiry (ms) per concurrency key. */
  private readonly leases = new Map<string, Map<string, number>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS).unref();
  }

  async consume(request: QuotaRequest): Promise<QuotaDecision> {
    return this.consumeNow(request);
  }

  /** The decision without a promise: the local fallback and the bench call it on the hot path. */
  consumeNow(request: QuotaRequest): QuotaDecision {
    const now = this.now();
    let allowed = true;
    const next: number[] = [];
    const rates: RateOutcome[] = request.rates.map((d) => {
      const interval = d.windowMs / d.limit;
      const capacity = d.burst * interval;
      const tat = Math.max(this.tats.get(d.key) ?? now, now);
      const newTat = tat + (d.cost ?? 1) * interval;
      next.push(newTat);
      if (newTat - now <= capacity)
        return {
          allowed: true,
          remaining: Math.floor((capacity - (newTat - now)) / interval + 1e-9),
          retryAfterMs: 0,
          resetMs: Math.ceil(newTat - now),
        };
      allowed = false;
      return {
        allowed: false,
        remaining: Math.max(0, Math.floor((capacity - (tat - now)) / interval + 1e-9)),
        retryAfterMs: Math.ceil(newTat - now - capacity),
        resetMs: Math.ceil(tat - now),
      };
    });
    const concurrency: ConcurrencyOutcome[] = (request.concurrency ?? []).map((d) => {
      const held = this.live(d.key, now);
      const ok = held.size < d.limit;
      if (!ok) allowed = false;
      return { allowed: ok, inUse: held.size };
    });
    if (!allowed) return { allowed, rates, concurrency };
    request.rates.forEach((d, i) => this.tats.set(d.key, next[i]!));
    const taken = (request.concurrency ?? []).map((d) => {
      const held = this.live(d.key, now);
      held.set(d.leaseId, now + d.leaseMs);
      return { allowed: true, inUse: held.size };
    });
    return { allowed, rates, concurrency: taken };
  }

  async release(leases: readonly LeaseRef[]): Promise<void> {
    this.releaseNow(leases);
  }

  releaseNow(leases: readonly LeaseRef[]): void {
    for (const l of leases) this.leases.get(l.key)?.delete(l.leaseId);
  }

  async renew(leases: readonly LeaseRef[]): Promise<void> {
    const now = this.now();
    for (const l of leases) {
      const held = this.live(l.key, now);
      if (held.has(l.leaseId)) held.set(l.leaseId, now + l.leaseMs);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  private live(key: string, now: number): Map<string, number> {
    let held = this.leases.get(key);
    if (!held) this.leases.set(key, (held = new Map()));
    for (const [id, expires] of held) if (expires <= now) held.delete(id);
    return held;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, tat] of this.tats) if (tat <= now) this.tats.delete(key);
    for (const [key, held] of this.leases) {
      for (const [id, expires] of held) if (expires <= now) held.delete(id);
      if (held.size === 0) this.leases.delete(key);
    }
  }
}
