/**
 * Usage analytics of one process: request counts, errors and latency (p50/p95) per server, tenant, user
 * and tool, over a rolling window of minutes, plus a per-second series of the last two minutes for live
 * views. Memory is bounded: one bucket per minute of the window, at most `maxKeys` distinct keys per
 * dimension and bucket (later ones count as `other`), and latency kept as a fixed log-scale histogram.
 *
 * Cluster-wide analytics read the audit log (Postgres), not this: every replica only knows its own traffic.
 */

export type UsageDimension = 'server' | 'tenant' | 'user' | 'tool';
export const USAGE_DIMENSIONS: readonly UsageDimension[] = ['server', 'tenant', 'user', 'tool'];

export interface UsageRecord {
  server?: string;
  tenant: string;
  user: string;
  tool?: string;
  ok: boolean;
  ms: number;
}

export interface UsageRow {
  key: string;
  count: number;
  errors: number;
  errorRate: number;
  p50Ms: number;
  p95Ms: number;
}

export interface SecondPoint {
  /** Start of the second (epoch ms). */
  t: number;
  count: number;
  errors: number;
  p50Ms: number;
  p95Ms: number;
}

/** Bin i holds latencies up to MIN_MS * GROWTH^i: 64 bins span 0.05 ms to about a minute. */
const BINS = 64;
const MIN_MS = 0.05;
const GROWTH = 1.25;
const LOG_GROWTH = Math.log(GROWTH);

function binOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  return Math.min(BINS - 1, Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH));
}

function quantile(hist: Uint32Array, total: number, q: number): number {
  if (total === 0) return 0;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < BINS; i++) {
    seen += hist[i]!;
    if (seen >= rank) return i === 0 ? MIN_MS : MIN_MS * GROWTH ** (i - 0.5); // the bin's geometric middle
  }
  return MIN_MS * GROWTH ** (BINS - 1);
}

class Agg {
  count = 0;
  errors = 0;
  readonly hist = new Uint32Array(BINS);
  add(ok: boolean, bin: number): void {
    this.count++;
    if (!ok) this.errors++;
    this.hist[bin]!++;
  }
  merge(o: Agg): void {
    this.count += o.count;
    this.errors += o.errors;
    for (let i = 0; i < BINS; i++) this.hist[i]! += o.hist[i]!;
  }
}

interface Bucket {
  /** Minute start (epoch ms). */
  start: number;
  total: Agg;
  by: Record<UsageDimension, Map<string, Agg>>;
}

export interface UsageOptions {
  /** Minutes of history kept. */
  windowMinutes: number;
  /** Distinct keys per dimension per minute; the rest count as `other`. */
  maxKeys: number;
  now?: () => number;
}

const SECONDS_KEPT = 120;

export class UsageAnalytics {
  private readonly buckets: Bucket[] = [];
  private readonly seconds: { t: number; agg: Agg }[] = [];
  private readonly now: () => number;

  constructor(private readonly o: UsageOptions) {
    this.now = o.now ?? Date.now;
  }

  get windowMinutes(): number {
    return this.o.windowMinutes;
  }

  record(r: UsageRecord): void {
    const now = this.now();
    const bin = binOf(r.ms);
    const b = this.bucketAt(now);
    b.total.add(r.ok, bin);
    this.addTo(b.by.server, r.server ?? '(gateway)', r.ok, bin);
    this.addTo(b.by.tenant, r.tenant, r.ok, bin);
    this.addTo(b.by.user, r.user, r.ok, bin);
    if (r.tool !== undefined) this.addTo(b.by.tool, r.tool, r.ok, bin);
    const sec = now - (now % 1000);
    let last = this.seconds[this.seconds.length - 1];
    if (!last || last.t !== sec) {
      last = { t: sec, agg: new Agg() };
      this.seconds.push(last);
      if (this.seconds.length > SECONDS_KEPT) this.seconds.shift();
    }
    last.agg.add(r.ok, bin);
  }

  /** Rows per key of `by` since `sinceMs` (default: the whole window), most requests first. */
  query(by: UsageDimension, sinceMs?: number, limit = 100): { total: UsageRow; rows: UsageRow[] } {
    const from = this.windowStart(sinceMs);
    const merged = new Map<string, Agg>();
    const total = new Agg();
    for (const b of this.buckets) {
      if (b.start + 60_000 <= from) continue;
      total.merge(b.total);
      for (const [k, a] of b.by[by]) {
        let m = merged.get(k);
        if (!m) merged.set(k, (m = new Agg()));
        m.merge(a);
      }
    }
    const rows = [...merged].map(([k, a]) => row(k, a)).sort((x, y) => y.count - x.count);
    return { total: row('total', total), rows: rows.slice(0, limit) };
  }

  /** The last `n` seconds, oldest first, one point per second (empty seconds included). */
  series(n = 60): SecondPoint[] {
    const now = this.now();
    const end = now - (now % 1000);
    const out: SecondPoint[] = [];
    const byT = new Map(this.seconds.map((s) => [s.t, s.agg]));
    for (let t = end - (n - 1) * 1000; t <= end; t += 1000) {
      const a = byT.get(t);
      out.push(
        a
          ? {
              t,
              count: a.count,
              errors: a.errors,
              p50Ms: quantile(a.hist, a.count, 0.5),
              p95Ms: quantile(a.hist, a.count, 0.95),
            }
          : { t, count: 0, errors: 0, p50Ms: 0, p95Ms: 0 },
      );
    }
    return out;
  }

  private windowStart(sinceMs: number | undefined): number {
    const oldest = this.now() - this.o.windowMinutes * 60_000;
    return sinceMs === undefined ? oldest : Math.max(sinceMs, oldest);
  }

  private bucketAt(now: number): Bucket {
    const start = now - (now % 60_000);
    const last = this.buckets[this.buckets.length - 1];
    if (last && last.start === start) return last;
    const b: Bucket = {
      start,
      total: new Agg(),
      by: { server: new Map(), tenant: new Map(), user: new Map(), tool: new Map() },
    };
    this.buckets.push(b);
    const oldest = start - this.o.windowMinutes * 60_000;
    while (this.buckets.length > 0 && this.buckets[0]!.start < oldest) this.buckets.shift();
    return b;
  }

  private addTo(map: Map<string, Agg>, key: string, ok: boolean, bin: number): void {
    let a = map.get(key);
    if (!a) {
      if (map.size >= this.o.maxKeys) key = 'other';
      a = map.get(key);
      if (!a) map.set(key, (a = new Agg()));
    }
    a.add(ok, bin);
  }
}

function row(key: string, a: Agg): UsageRow {
  return {
    key,
    count: a.count,
    errors: a.errors,
    errorRate: a.count === 0 ? 0 : a.errors / a.count,
    p50Ms: round(quantile(a.hist, a.count, 0.5)),
    p95Ms: round(quantile(a.hist, a.count, 0.95)),
  };
}

const round = (x: number): number => Math.round(x * 1000) / 1000;
