/**
 * Where quota state lives: rate counters (GCRA) and concurrency leases. One `consume` call decides one
 * request for every dimension it names, all or nothing, so that replicas sharing a store admit exactly
 * the configured number of requests between them.
 */

/** A rate dimension: at most `limit` per `windowMs` sustained, with up to `burst` spent at once. */
export interface RateDimension {
  /** The counter's identity, e.g. `user:default:alice`. */
  readonly key: string;
  /**
   * Keys with the same slot land in one Redis Cluster slot (the adapter puts it in the hash tag). The
   * dimensions of one `consume` call should share a slot wherever the deployment runs on a Cluster.
   */
  readonly slot: string;
  readonly limit: number;
  readonly windowMs: number;
  /** The most that may be spent at once (the GCRA bucket's capacity); at least 1. */
  readonly burst: number;
  /** Units this request costs (default 1). */
  readonly cost?: number;
}

/** A concurrency dimension: at most `limit` leases held at once; a lease not renewed expires. */
export interface ConcurrencyDimension {
  readonly key: string;
  readonly slot: string;
  readonly limit: number;
  /** Unique per request; the handle `release` and `renew` name. */
  readonly leaseId: string;
  /** A lease neither released nor renewed within this time is gone (its holder died). */
  readonly leaseMs: number;
}

export interface QuotaRequest {
  readonly rates: readonly RateDimension[];
  readonly concurrency?: readonly ConcurrencyDimension[];
}

export interface RateOutcome {
  readonly allowed: boolean;
  /** Requests that could still be made at once after this decision. */
  readonly remaining: number;
  /** When denied: how long until this request would be admitted. 0 when allowed. */
  readonly retryAfterMs: number;
  /** How long until the bucket is full again (the whole burst available). */
  readonly resetMs: number;
}

export interface ConcurrencyOutcome {
  readonly allowed: boolean;
  /** Leases held after this decision (before it, when denied). */
  readonly inUse: number;
}

export interface QuotaDecision {
  /** True when every dimension allowed it; only then was anything consumed or leased. */
  readonly allowed: boolean;
  /** In the order of `QuotaRequest.rates`. */
  readonly rates: readonly RateOutcome[];
  /** In the order of `QuotaRequest.concurrency`. */
  readonly concurrency: readonly ConcurrencyOutcome[];
}

export interface LeaseRef {
  readonly key: string;
  readonly slot: string;
  readonly leaseId: string;
  readonly leaseMs: number;
}

export interface QuotaStore {
  /**
   * Decides one request for all of its dimensions atomically: either every rate counter is charged and
   * every lease taken, or nothing changes. One round trip to a shared store.
   */
  consume(request: QuotaRequest): Promise<QuotaDecision>;
  /** Gives a lease back (unknown or expired leases are ignored). */
  release(leases: readonly LeaseRef[]): Promise<void>;
  /** Extends leases still held by `leaseMs` from now, so long requests keep their slot. */
  renew(leases: readonly LeaseRef[]): Promise<void>;
  close(): Promise<void>;
}
