/**
 * The gateway's Prometheus metrics, on a registry of its own (never prom-client's global one, so that two
 * gateways in one process, or a host application, do not mix their series). One instance per node, made
 * by the composition root and handed to the modules that record into it.
 *
 * Label cardinality is bounded by construction: `tool` and `tenant` values pass through a `TopN` cap (the
 * first N distinct values keep their name, later ones count as `other`); session ids and user ids are never
 * labels. The per-request series are kept by the gateway itself (HotCounter, HotHistogram) and read by
 * prom-client at scrape time, so a request costs a few map lookups, not a label hash per series.
 */
import { Counter, Gauge, Registry } from 'prom-client';

/** How a request ended, as the `outcome` label says it. */
export type Outcome = 'ok' | 'error' | 'tool_error' | 'cancelled';

/** One finished client request, as the core reports it. */
export interface RequestObservation {
  method: string;
  /** The tool name the client used (tools/call only). */
  tool?: string;
  /** The server the request was routed to; absent when answered by the gateway itself. */
  server?: string;
  tenant: string;
  outcome: Outcome;
  /** The gateway error code of an error answer, when the gateway made it. */
  code?: string;
  /** From the core's receipt of the request to its answer. */
  totalMs: number;
  /** Time spent waiting for the backend (included in totalMs). */
  backendMs?: number;
}

/** Keeps at most `limit` distinct values; the rest become `other`. */
export class TopN {
  private readonly seen = new Set<string>();
  constructor(private readonly limit: number) {}
  cap(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.limit) return 'other';
    this.seen.add(value);
    return value;
  }
}

export interface MetricsOptions {
  region: string;
  /** Distinct tool names kept as labels; beyond it, `other`. */
  maxTools: number;
  /** Distinct tenants kept as labels; beyond it, `other`. */
  maxTenants: number;
}

/** Numeric states of `mcpgw_breaker_state`. */
export const BREAKER_STATE = { closed: 0, half_open: 1, open: 2 } as const;

/** Tokens of one tool result: from a one-line answer to a large document. */
const TOKEN_BUCKETS = [16, 64, 256, 1024, 4096, 16384, 65536, 262144];

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

type Labels = Record<string, string>;

/**
 * Per-label-set entries behind nested maps, one level per label: looking up interned label values is
 * about 2.5 times cheaper than building and hashing one joined key per request.
 */
class SeriesTree<E> {
  private readonly root = new Map<string, unknown>();
  readonly entries: E[] = [];
  at(keys: readonly string[], make: () => E): E {
    let m = this.root;
    const last = keys.length - 1;
    for (let i = 0; i < last; i++) {
      let n = m.get(keys[i]!) as Map<string, unknown> | undefined;
      if (!n) m.set(keys[i]!, (n = new Map()));
      m = n;
    }
    let e = m.get(keys[last]!) as E | undefined;
    if (e === undefined) {
      e = make();
      m.set(keys[last]!, e);
      this.entries.push(e);
    }
    return e;
  }
  clear(): void {
    this.root.clear();
    this.entries.length = 0;
  }
}

/**
 * A counter for the request path: prom-client hashes the label set on every `inc` (about 2.4 µs with six
 * labels); this keeps one entry per label set behind a key the caller already built, and hands prom-client
 * the values only when scraped.
 */
class HotCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly series = new SeriesTree<{ labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }
  inc(keys: readonly string[], labels: () => Labels): void {
    this.series.at(keys, () => ({ labels: labels(), value: 0 })).value++;
  }
  async get() {
    const values = this.series.entries.map((e) => ({ labels: e.labels, value: e.value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
  reset(): void {
    this.series.clear();
  }
}

/** The histogram counterpart of HotCounter: per label set, a count per bucket, the sum and the count. */
class HotHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new SeriesTree<{
    labels: Labels;
    buckets: Float64Array;
    sum: number;
    count: number;
  }>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }
  observe(keys: readonly string[], labels: () => Labels, v: number): void {
    const e = this.series.at(keys, () => ({
      labels: labels(),
      buckets: new Float64Array(this.bounds.length),
      sum: 0,
      count: 0,
    }));
    e.sum += v;
    e.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++)
      if (v <= b[i]!) {
        e.buckets[i]!++;
        break;
      }
  }
  async get() {
    const values: { labels: Labels; value: number; metricName: string }[] = [];
    for (const e of this.series.entries) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += e.buckets[i]!;
        values.push({
          labels: { ...e.labels, le: String(le) },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({ labels: { ...e.labels, le: '+Inf' }, value: e.count, metricName: `${this.name}_bucket` });
      values.push({ labels: e.labels, value: e.sum, metricName: `${this.name}_sum` });
      values.push({ labels: e.labels, value: e.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
  reset(): void {
    this.series.clear();
  }
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly tools: TopN;
  private readonly tenants: TopN;
  private readonly region: string;

  private readonly requests: HotCounter;
  readonly errors: Counter<'code'>;
  private readonly gatewayLatency: HotHistogram;
  private readonly backendLatency: HotHistogram;
  private readonly resultTokens: HotHistogram;
  readonly backendUp: Gauge<'server' | 'transport'>;
  readonly sessions: Gauge<'transport'>;
  readonly stdioProcesses: Gauge;
  readonly sseStreams: Gauge;
  readonly breakerState: Gauge<'server' | 'replica'>;
  readonly quotaRefusals: Counter<'dimension'>;
  readonly cacheRequests: Counter<'result'>;
  readonly queueDepth: Gauge<'server'>;
  readonly federationLag: Gauge<'region'>;
  readonly regionUp: Gauge<'region'>;
  readonly authFailures: Counter;
  readonly securityAlerts: Counter<'kind'>;
  readonly sourceRefusals: Counter<'reason'>;

  constructor(o: MetricsOptions) {
    this.region = o.region;
    this.tools = new TopN(o.maxTools);
    this.tenants = new TopN(o.maxTenants);
    const registers = [this.registry];
    this.requests = new HotCounter(
      'mcpgw_requests_total',
      'Client requests answered, by method, tool, server, tenant, region and outcome.',
      this.registry,
    );
    this.errors = new Counter({
      name: 'mcpgw_errors_total',
      help: 'Error answers the gateway made, by GW_* code.',
      labelNames: ['code'],
      registers,
    });
    this.gatewayLatency = new HotHistogram(
      'mcpgw_request_gateway_duration_seconds',
      'Time the gateway added to a request (total minus backend wait).',
      LATENCY_BUCKETS,
      this.registry,
    );
    this.backendLatency = new HotHistogram(
      'mcpgw_backend_duration_seconds',
      'Time spent waiting for the backend on a forwarded request.',
      LATENCY_BUCKETS,
      this.registry,
    );
    this.resultTokens = new HotHistogram(
      'mcpgw_tool_result_tokens',
      'Tokens (o200k_base) of the tool results sent to clients, by server and tool; _sum is the total.',
      TOKEN_BUCKETS,
      this.registry,
    );
    this.backendUp = new Gauge({
      name: 'mcpgw_backend_up',
      help: '1 when the backend server is ready, 0 otherwise.',
      labelNames: ['server', 'transport'],
      registers,
    });
    this.sessions = new Gauge({
      name: 'mcpgw_sessions',
      help: 'Client sessions open on this node, by client transport.',
      labelNames: ['transport'],
      registers,
    });
    this.stdioProcesses = new Gauge({
      name: 'mcpgw_stdio_processes',
      help: 'Supervised stdio backend processes running.',
      registers,
    });
    this.sseStreams = new Gauge({
      name: 'mcpgw_sse_streams',
      help: 'SSE streams open to clients.',
      registers,
    });
    this.breakerState = new Gauge({
      name: 'mcpgw_breaker_state',
      help: 'Circuit breaker state per backend replica: 0 closed, 1 half-open, 2 open.',
      labelNames: ['server', 'replica'],
      registers,
    });
    this.quotaRefusals = new Counter({
      name: 'mcpgw_quota_refusals_total',
      help: 'Requests refused by a quota, by dimension (tenant, user, tool, server, ...).',
      labelNames: ['dimension'],
      registers,
    });
    this.cacheRequests = new Counter({
      name: 'mcpgw_cache_requests_total',
      help: 'Response cache lookups by result (hit, miss, stale).',
      labelNames: ['result'],
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'mcpgw_queue_depth',
      help: 'Requests waiting for a backend slot, per server.',
      labelNames: ['server'],
      registers,
    });
    this.federationLag = new Gauge({
      name: 'mcpgw_federation_lag_seconds',
      help: "Age of the newest state seen from a region's registry mirror.",
      labelNames: ['region'],
      registers,
    });
    this.regionUp = new Gauge({
      name: 'mcpgw_region_up',
      help: '1 when the region is reachable (heartbeats current), 0 otherwise.',
      labelNames: ['region'],
      registers,
    });
    this.authFailures = new Counter({
      name: 'mcpgw_auth_failures_total',
      help: 'Failed client authentications at the edge.',
      registers,
    });
    this.securityAlerts = new Counter({
      name: 'mcpgw_security_alerts_total',
      help: 'Security alerts raised at the edge, by kind (auth_failures: a source passed the failure threshold).',
      labelNames: ['kind'],
      registers,
    });
    this.sourceRefusals = new Counter({
      name: 'mcpgw_source_refusals_total',
      help: 'Requests refused for their source address: denied (IP lists) or blocked (after auth failures).',
      labelNames: ['reason'],
      registers,
    });
  }

  /** Records one finished request (the core calls this once per client request). */
  observeRequest(o: RequestObservation): void {
    // Only names that reached a server: a client making up tool names must not use up the label cap.
    const tool = o.tool === undefined || o.server === undefined ? '' : this.tools.cap(o.tool);
    const tenant = this.tenants.cap(o.tenant);
    const server = o.server ?? '';
    const method = o.method;
    this.requests.inc([method, tool, server, tenant, o.outcome], () => ({
      method,
      tool,
      server,
      tenant,
      region: this.region,
      outcome: o.outcome,
    }));
    if (o.code !== undefined) this.errors.inc({ code: o.code });
    const key = [method, server];
    const labels = () => ({ method, server });
    this.gatewayLatency.observe(key, labels, Math.max(0, o.totalMs - (o.backendMs ?? 0)) / 1000);
    if (o.backendMs !== undefined && o.server !== undefined)
      this.backendLatency.observe(key, labels, o.backendMs / 1000);
  }

  /** The token count of one tool result a client got (the tool's name as the client used it). */
  observeResultTokens(server: string, tool: string, tokens: number): void {
    const t = this.tools.cap(tool);
    this.resultTokens.observe([server, t], () => ({ server, tool: t }), tokens);
  }

  // ---------------------------------------------------------------- for other modules

  /** Circuit breaker of one backend replica changed state. */
  setBreakerState(server: string, replica: string, state: keyof typeof BREAKER_STATE): void {
    this.breakerState.set({ server, replica }, BREAKER_STATE[state]);
  }
  /** A quota refused a request; `dimension` names which limit (tenant, user, tool, server, global...). */
  recordQuotaRefusal(dimension: string): void {
    this.quotaRefusals.inc({ dimension });
  }
  recordCacheRequest(result: 'hit' | 'miss' | 'stale'): void {
    this.cacheRequests.inc({ result });
  }
  setQueueDepth(server: string, depth: number): void {
    this.queueDepth.set({ server }, depth);
  }
  setFederationLag(region: string, seconds: number): void {
    this.federationLag.set({ region }, seconds);
  }
  setRegionUp(region: string, up: boolean): void {
    this.regionUp.set({ region }, up ? 1 : 0);
  }

  /**
   * Adds a gauge whose value is read at scrape time (sessions, processes...): `collect` sets it. Other
   * modules use this for their own state without the registry knowing them.
   */
  onScrape(collect: () => void): void {
    this.scrapeHooks.push(collect);
  }
  private readonly scrapeHooks: (() => void)[] = [];

  /** The exposition text for `/metrics`. */
  async render(): Promise<{ contentType: string; body: string }> {
    for (const h of this.scrapeHooks) h();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Current totals the dashboard shows (sums over labels). */
  async totals(): Promise<{ quotaRefusals: Record<string, number>; authFailures: number }> {
    for (const h of this.scrapeHooks) h();
    const q = await this.quotaRefusals.get();
    const quotaRefusals: Record<string, number> = {};
    for (const v of q.values) quotaRefusals[String(v.labels.dimension)] = v.value;
    const a = await this.authFailures.get();
    return { quotaRefusals, authFailures: a.values[0]?.value ?? 0 };
  }
}
