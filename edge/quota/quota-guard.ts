/**
 * Decides requests against the QuotaStore, and keeps deciding while the store is away: each dimension
 * then follows its `onStoreFailure` (open, closed, or a per-process fallback with the limit divided by the
 * expected replica count). It logs when the store goes and comes back, counts what it decided (`stats`),
 * renews the concurrency leases it holds, and gives them back.
 */
import { randomUUID } from 'node:crypto';
import { MemoryQuotaStore } from '../../shared/adapters/memory/quota-store.js';
import type { Logger } from '../../shared/log.js';
import type { LeaseRef, QuotaDecision, QuotaStore, RateDimension } from '../../shared/ports/quota-store.js';
import type { ConcurrencyRule, QuotaDimension } from './policy.js';

/** What one dimension reported; enough for the RateLimit headers and for a refusal's data. */
export interface DimensionReport {
  readonly dimension: QuotaDimension;
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryAfterMs: number;
  readonly allowed: boolean;
}

export type Verdict =
  | {
      readonly allowed: true;
      readonly reports: readonly DimensionReport[];
      /** The concurrency slot taken, to give back when the request ends. */
      readonly lease?: HeldLease;
    }
  | {
      readonly allowed: false;
      readonly reports: readonly DimensionReport[];
      /** The dimension that refused (the one with the longest wait when several did). */
      readonly refusal:
        | { kind: 'rate'; report: DimensionReport }
        | { kind: 'concurrency'; rule: ConcurrencyRule; inUse: number }
        | { kind: 'unavailable'; dimension: string };
    };

export interface HeldLease {
  readonly ref: LeaseRef;
  readonly local: boolean;
}

export interface QuotaStats {
  decisions: number;
  allowed: number;
  refused: Record<string, number>;
  storeAvailable: boolean;
  storeFailures: number;
  /** Decisions made (wholly or partly) without the store, per onStoreFailure mode. */
  fallbackDecisions: { open: number; closed: number; local: number };
  leasesHeld: number;
  queued: number;
  queueTimeouts: number;
}

export interface QuotaGuardOptions {
  store: QuotaStore;
  log: Logger;
  /** Replicas sharing the limits: the local fallback divides each limit by it. */
  expectedReplicas: number;
}

export class QuotaGuard {
  private readonly local = new MemoryQuotaStore();
  private readonly held = new Map<string, HeldLease>();
  private readonly releaseWaiters = new Set<() => void>();
  private renewTimer: NodeJS.Timeout | undefined;
  private storeUp = true;
  readonly stats: QuotaStats = {
    decisions: 0,
    allowed: 0,
    refused: {},
    storeAvailable: true,
    storeFailures: 0,
    fallbackDecisions: { open: 0, closed: 0, local: 0 },
    leasesHeld: 0,
    queued: 0,
    queueTimeouts: 0,
  };

  constructor(private readonly o: QuotaGuardOptions) {}

  /** Decides one request: every rate dimension and (optionally) one concurrency slot, all or nothing. */
  async decide(dims: readonly QuotaDimension[], conc?: ConcurrencyRule): Promise<Verdict> {
    this.stats.decisions++;
    const lease = conc && {
      key: conc.key,
      slot: conc.slot,
      limit: conc.limit,
      leaseId: randomUUID(),
      leaseMs: conc.leaseMs,
    };
    let decision: QuotaDecision;
    let local = false;
    try {
      decision = await this.o.store.consume({
        rates: dims.map((d) => d.rate),
        concurrency: lease ? [lease] : [],
      });
      this.storeBack();
    } catch (err) {
      this.storeLost(err);
      const fallback = this.fallback(dims, conc, lease);
      if (!('decision' in fallback)) return this.count(fallback);
      decision = fallback.decision;
      dims = fallback.dims;
      local = fallback.local;
    }
    const reports = dims.map((d, i) => ({ dimension: d, ...decision.rates[i]! }));
    if (decision.allowed) {
      let held: HeldLease | undefined;
      if (lease && decision.concurrency.length > 0) {
        held = { ref: lease, local };
        this.hold(held);
      }
      return this.count({ allowed: true, reports, lease: held });
    }
    const refusedRates = reports.filter((r) => !r.allowed);
    if (refusedRates.length > 0) {
      const worst = refusedRates.reduce((a, b) => (b.retryAfterMs > a.retryAfterMs ? b : a));
      return this.count({ allowed: false, reports, refusal: { kind: 'rate', report: worst } });
    }
    return this.count({
      allowed: false,
      reports,
      refusal: { kind: 'concurrency', rule: conc!, inUse: decision.concurrency[0]?.inUse ?? conc!.limit },
    });
  }

  /**
   * Like `decide`, but a request refused only for want of a concurrency slot waits for one, up to
   * `timeoutMs`: it is woken when this replica frees a slot and retries every `pollMs` for slots other
   * replicas free. Resolves to undefined on timeout.
   */
  async decideQueued(
    dims: readonly QuotaDimension[],
    conc: ConcurrencyRule,
    timeoutMs: number,
    pollMs = 20,
  ): Promise<Verdict | undefined> {
    const deadline = Date.now() + timeoutMs;
    let v = await this.decide(dims, conc);
    if (v.allowed || v.refusal.kind !== 'concurrency') return v;
    this.stats.queued++;
    while (Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.releaseWaiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(pollMs, Math.max(1, deadline - Date.now())));
        this.releaseWaiters.add(wake);
      });
      v = await this.decide(dims, conc);
      if (v.allowed || v.refusal.kind !== 'concurrency') return v;
    }
    this.stats.queueTimeouts++;
    return undefined;
  }

  /** Gives a concurrency slot back (where it was taken: the store or the local fallback). */
  release(lease: HeldLease): void {
    if (!this.held.delete(lease.ref.leaseId)) return;
    this.stats.leasesHeld = this.held.size;
    if (lease.local) this.local.releaseNow([lease.ref]);
    else
      this.o.store.release([lease.ref]).catch((err: unknown) => {
        // The lease expires by itself within leaseMs.
        this.storeLost(err);
      });
    for (const wake of [...this.releaseWaiters]) wake();
  }

  async close(): Promise<void> {
    clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    await Promise.allSettled([...this.held.values()].map((l) => this.release(l)));
    await this.local.close();
    await this.o.store.close();
  }

  // ----------------------------------------------------------------------------------------------

  private fallback(
    dims: readonly QuotaDimension[],
    conc: ConcurrencyRule | undefined,
    lease: (LeaseRef & { limit: number }) | undefined,
  ):
    | { decision: QuotaDecision; dims: QuotaDimension[]; local: boolean }
    | Extract<Verdict, { allowed: false }> {
    const modes = [...dims.map((d) => d.onStoreFailure), ...(conc ? [conc.onStoreFailure] : [])];
    const closed =
      dims.find((d) => d.onStoreFailure === 'closed')?.name ??
      (conc?.onStoreFailure === 'closed' ? 'concurrency' : undefined);
    if (closed) {
      this.stats.fallbackDecisions.closed++;
      return { allowed: false, reports: [], refusal: { kind: 'unavailable', dimension: closed } };
    }
    const localDims = dims.filter((d) => d.onStoreFailure === 'local');
    const localLease = conc?.onStoreFailure === 'local' ? lease : undefined;
    if (modes.includes('local')) this.stats.fallbackDecisions.local++;
    else this.stats.fallbackDecisions.open++;
    const n = this.o.expectedReplicas;
    const share = (x: number) => Math.max(1, Math.floor(x / n));
    const rates: RateDimension[] = localDims.map((d) => ({
      ...d.rate,
      limit: share(d.rate.limit),
      burst: share(d.rate.burst),
    }));
    const decision = this.local.consumeNow({
      rates,
      concurrency: localLease ? [{ ...localLease, limit: share(localLease.limit) }] : [],
    });
    // Reports describe what this process enforces meanwhile (the divided limits).
    const shown = localDims.map((d, i) => ({ ...d, rate: rates[i]! }));
    return { decision, dims: shown, local: true };
  }

  private hold(lease: HeldLease): void {
    this.held.set(lease.ref.leaseId, lease);
    this.stats.leasesHeld = this.held.size;
    if (!this.renewTimer && !lease.local) {
      const every = Math.max(250, Math.floor(lease.ref.leaseMs / 3));
      this.renewTimer = setInterval(() => void this.renewHeld(), every).unref();
    }
  }

  private async renewHeld(): Promise<void> {
    const refs = [...this.held.values()].filter((l) => !l.local).map((l) => l.ref);
    if (refs.length === 0) return;
    await this.o.store.renew(refs).catch((err: unknown) => this.storeLost(err));
  }

  private count(v: Verdict): Verdict {
    if (v.allowed) this.stats.allowed++;
    else {
      const key =
        v.refusal.kind === 'rate'
          ? v.refusal.report.dimension.name
          : v.refusal.kind === 'concurrency'
            ? 'concurrency'
            : 'unavailable';
      this.stats.refused[key] = (this.stats.refused[key] ?? 0) + 1;
    }
    return v;
  }

  private storeLost(err: unknown): void {
    this.stats.storeFailures++;
    if (!this.storeUp) return;
    this.storeUp = false;
    this.stats.storeAvailable = false;
    this.o.log.warn(
      { err: (err as Error)?.message ?? String(err) },
      'quota store unavailable: each dimension follows its onStoreFailure until it is back',
    );
  }

  private storeBack(): void {
    if (this.storeUp) return;
    this.storeUp = true;
    this.stats.storeAvailable = true;
    this.o.log.info({ storeFailures: this.stats.storeFailures }, 'quota store back: deciding with it again');
  }
}
