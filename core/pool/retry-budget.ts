/**
 * Retries as a bounded share of traffic (a token bucket, as Finagle's RetryBudget): every request
 * deposits `percent`/100 of a token, every retry withdraws one, and the bucket holds at most `burst`.
 * When a backend is failing for everyone, retries stop at that share instead of multiplying the load.
 */
export class RetryBudget {
  private tokens: number;
  private readonly perRequest: number;
  granted = 0;
  refused = 0;

  constructor(
    percent: number,
    private readonly burst: number,
  ) {
    this.perRequest = percent / 100;
    this.tokens = burst;
  }

  /** One request (first attempt) seen. */
  deposit(): void {
    this.tokens = Math.min(this.burst, this.tokens + this.perRequest);
  }

  /** True (and one token spent) when a retry may go. */
  withdraw(): boolean {
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.granted++;
      return true;
    }
    this.refused++;
    return false;
  }

  get available(): number {
    return Math.floor(this.tokens * 100) / 100;
  }
}

/** Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^(retry-1))]. */
export function backoffMs(
  retry: number,
  initialMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * Math.min(maxMs, initialMs * 2 ** (retry - 1)));
}
