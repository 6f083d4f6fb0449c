/**
 * Balancers: which replica takes a new backend session (HTTP, then sticky) or one call (stdio pools,
 * stateless backends). Each sees only replicas that can serve now and honours each one's effective
 * weight, which slow start ramps up after a recovery.
 */
export interface Balanced {
  /** Configured weight times the slow-start ramp (0..weight]. */
  effectiveWeight(now: number): number;
  readonly weight: number;
  /** Calls (or sessions being opened) in flight. */
  readonly inflight: number;
  /** Exponentially weighted moving average of call latency, ms. */
  readonly ewmaMs: number;
}

export type BalancerName = 'round-robin' | 'least-connections' | 'weighted' | 'latency';

export interface Balancer {
  /** One of `candidates` (never empty), or undefined when it is. */
  pick<T extends Balanced>(candidates: readonly T[], now: number): T | undefined;
}

/** Takes a replica still in slow start with the probability of its ramp, so it warms up gradually. */
function warm<T extends Balanced>(r: T, now: number, random: () => number): boolean {
  return random() * r.weight < r.effectiveWeight(now);
}

class RoundRobin implements Balancer {
  private next = 0;
  constructor(private readonly random: () => number) {}
  pick<T extends Balanced>(c: readonly T[], now: number): T | undefined {
    if (c.length === 0) return undefined;
    for (let i = 0; i < c.length; i++) {
      const r = c[this.next++ % c.length]!;
      if (warm(r, now, this.random)) return r;
    }
    return c[this.next++ % c.length];
  }
}

class LeastConnections implements Balancer {
  constructor(private readonly random: () => number) {}
  pick<T extends Balanced>(c: readonly T[], now: number): T | undefined {
    let best: T | undefined;
    let bestLoad = Infinity;
    // In-flight calls per unit of weight; ties broken at random so equal replicas share the load.
    const start = Math.floor(this.random() * c.length);
    for (let i = 0; i < c.length; i++) {
      const r = c[(start + i) % c.length]!;
      const load = (r.inflight + 1) / r.effectiveWeight(now);
      if (load < bestLoad) {
        best = r;
        bestLoad = load;
      }
    }
    return best;
  }
}

/** Smooth weighted round-robin (as nginx does): each replica's share equals its weight, interleaved. */
class Weighted implements Balancer {
  private readonly current = new WeakMap<Balanced, number>();
  pick<T extends Balanced>(c: readonly T[], now: number): T | undefined {
    let total = 0;
    let best: T | undefined;
    let bestScore = -Infinity;
    for (const r of c) {
      const w = r.effectiveWeight(now);
      total += w;
      const score = (this.current.get(r) ?? 0) + w;
      this.current.set(r, score);
      if (score > bestScore) {
        best = r;
        bestScore = score;
      }
    }
    if (best) this.current.set(best, bestScore - total);
    return best;
  }
}

/**
 * Power of two choices over EWMA latency: two replicas drawn at random (weighted), the one with the lower
 * expected cost (latency times queue) wins. Cheap, and it steers away from a slow replica without herding
 * every call onto the single fastest one.
 */
class Latency implements Balancer {
  constructor(private readonly random: () => number) {}
  pick<T extends Balanced>(c: readonly T[], now: number): T | undefined {
    if (c.length <= 1) return c[0];
    const a = this.draw(c, now, undefined);
    const b = this.draw(c, now, a);
    return cost(a, now) <= cost(b, now) ? a : b;
  }
  /** One replica drawn with probability proportional to its effective weight, other than `not`. */
  private draw<T extends Balanced>(c: readonly T[], now: number, not: T | undefined): T {
    let total = 0;
    for (const r of c) if (r !== not) total += r.effectiveWeight(now);
    let x = this.random() * total;
    let last: T | undefined;
    for (const r of c) {
      if (r === not) continue;
      last = r;
      x -= r.effectiveWeight(now);
      if (x < 0) return r;
    }
    return last!;
  }
}

function cost(r: Balanced, now: number): number {
  // A replica with no measurement yet is tried once (cost 0), but not piled onto while that first call
  // is out: until it answers nobody knows whether it is the slow one.
  if (r.ewmaMs === 0) return r.inflight === 0 ? 0 : Infinity;
  return (r.ewmaMs * (r.inflight + 1)) / r.effectiveWeight(now);
}

export function createBalancer(name: BalancerName, random: () => number = Math.random): Balancer {
  switch (name) {
    case 'round-robin':
      return new RoundRobin(random);
    case 'least-connections':
      return new LeastConnections(random);
    case 'weighted':
      return new Weighted();
    case 'latency':
      return new Latency(random);
  }
}
