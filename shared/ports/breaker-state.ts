/**
 * BreakerStateStore: what the core instances of one region learn about backend replicas, shared so that
 * a replica one instance found broken (breaker open, ejected as an outlier) is avoided by all of them at
 * once instead of each paying for the lesson with failed calls.
 */
export interface ReplicaVerdict {
  server: string;
  /** The replica's id within its server (its URL, or `#<n>` for a stdio process slot). */
  replica: string;
  /** `open`: do not send; `closed`: the replica recovered (an earlier open no longer holds). */
  state: 'open' | 'closed';
  /** Why, for operators (`breaker`, `unhealthy`). */
  reason: string;
  /** Epoch ms after which an `open` verdict lapses by itself (the breaker's half-open time). */
  untilMs: number;
  /** The instance that published it, so that it can ignore its own. */
  origin: string;
}

export interface BreakerStateStore {
  /** Makes `verdict` known to every instance; an `open` one stays readable until `untilMs`. */
  publish(verdict: ReplicaVerdict): Promise<void>;
  /** The `open` verdicts still in force (for an instance that starts later). */
  current(): Promise<ReplicaVerdict[]>;
  /**
   * Calls `listener` for every verdict published from now on, by any instance (the publisher's own
   * included: compare `origin`). Resolves once listening; the returned function stops it.
   */
  watch(listener: (verdict: ReplicaVerdict) => void): Promise<() => void>;
  close(): Promise<void>;
}
