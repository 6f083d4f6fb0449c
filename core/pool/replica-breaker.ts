/**
 * One circuit breaker per replica (opossum). Only failures on the replica's account trip it (unavailable,
 * protocol errors, timeouts); answers, tool errors and caller mistakes are successes. Open: the pool
 * fails fast or picks another replica; after `resetTimeoutMs` one probe call goes through (half-open).
 */
import CircuitBreaker from 'opossum';
import type { JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';

export interface BreakerPolicy {
  errorThresholdPercentage: number;
  volumeThreshold: number;
  resetTimeoutMs: number;
  rollingWindowMs: number;
}

/** Thrown inside the breaker so that opossum counts a failure; carries the backend's answer out. */
export class ReplicaFailure extends Error {
  constructor(readonly response: JsonRpcResponse) {
    super('replica failure');
    this.name = 'ReplicaFailure';
  }
}

/** opossum's rejection of a call while open (or while a half-open probe is out). */
export function isBreakerOpen(err: unknown): boolean {
  return (err as { code?: string })?.code === 'EOPENBREAKER';
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export class ReplicaBreaker {
  private readonly cb: CircuitBreaker<[() => Promise<JsonRpcResponse>], JsonRpcResponse>;
  /** Set while applying another instance's verdict, so that it is not published back. */
  private remote = false;
  opens = 0;

  constructor(
    name: string,
    policy: BreakerPolicy,
    private readonly onChange: (state: 'open' | 'closed', fromRemote: boolean) => void,
  ) {
    this.cb = new CircuitBreaker((attempt: () => Promise<JsonRpcResponse>) => attempt(), {
      name,
      timeout: false, // the pool's own deadline handles time, and tells the backend
      errorThresholdPercentage: policy.errorThresholdPercentage,
      volumeThreshold: policy.volumeThreshold,
      resetTimeout: policy.resetTimeoutMs,
      rollingCountTimeout: policy.rollingWindowMs,
      rollingCountBuckets: 10,
    });
    this.cb.on('open', () => {
      this.opens++;
      this.onChange('open', this.remote);
    });
    this.cb.on('close', () => this.onChange('closed', this.remote));
  }

  get state(): BreakerState {
    return this.cb.opened ? 'open' : this.cb.halfOpen ? 'half-open' : 'closed';
  }

  /** True when a call may go now (closed, or half-open with its probe not yet taken). */
  get admits(): boolean {
    return this.cb.closed || this.cb.pendingClose;
  }

  /** Runs `attempt` under the breaker: throw ReplicaFailure from it to count a failure. */
  fire(attempt: () => Promise<JsonRpcResponse>): Promise<JsonRpcResponse> {
    return this.cb.fire(attempt);
  }

  /** Applies another instance's verdict. */
  applyRemote(state: 'open' | 'closed'): void {
    this.remote = true;
    try {
      if (state === 'open') this.cb.open();
      else this.cb.close();
    } finally {
      this.remote = false;
    }
  }

  stats(): { fires: number; failures: number; successes: number; rejects: number } {
    const s = this.cb.stats;
    return { fires: s.fires, failures: s.failures, successes: s.successes, rejects: s.rejects };
  }

  shutdown(): void {
    this.cb.shutdown();
  }
}
