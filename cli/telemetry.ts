/**
 * The OpenTelemetry SDK, chosen by config here in the composition root only: product code speaks the API
 * (shared/telemetry/tracing.ts). `telemetry.tracing.enabled: false` registers nothing, and the API's
 * no-op tracer is what the helpers would see (they do not even reach it: `enableTracing` stays off). The
 * SDK is imported only when tracing is on: it costs start-up time a node without tracing need not pay.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import { GatewayMetrics } from '../shared/telemetry/metrics.js';
import { enableTracing } from '../shared/telemetry/tracing.js';

export interface TracingHandle {
  /** Flushes what is buffered and unregisters the provider. */
  shutdown(): Promise<void>;
}

/**
 * Registers a tracer provider as configured. `extraProcessors` lets a test (or an embedding host) add its
 * own span processors, e.g. a SimpleSpanProcessor over an InMemorySpanExporter.
 */
export async function startTracing(
  config: GatewayConfig,
  log: Logger,
  extraProcessors: SpanProcessor[] = [],
): Promise<TracingHandle | undefined> {
  const t = config.telemetry.tracing;
  if (!t.enabled) return undefined;
  const [{ resourceFromAttributes }, base, { NodeTracerProvider }] = await Promise.all([
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/sdk-trace-node'),
  ]);
  const { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler } = base;
  const resource = {
    'service.name': t.serviceName,
    'mcpgw.role': config.role,
    'mcpgw.region': config.region,
  };
  const spanProcessors: SpanProcessor[] = [...extraProcessors];
  // Every request is sampled at sampleRatio 1 and makes about eight spans: the queue holds a second of
  // them at a few thousand requests a second (the default 2048 drops spans under load), exported every
  // 200 ms. `exportThread: worker` does the OTLP transform and send in a worker (off-thread-exporter.ts).
  if (t.exporter === 'otlp') {
    const exporter =
      t.exportThread === 'worker'
        ? new (await import('./off-thread-exporter.js')).OffThreadSpanExporter(
            { url: t.endpoint, resource },
            log,
          )
        : new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter({
            url: t.endpoint,
          });
    spanProcessors.push(
      new BatchSpanProcessor(exporter, {
        maxQueueSize: 32_768,
        maxExportBatchSize: 2048,
        scheduledDelayMillis: 200,
      }),
    );
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes(resource),
    // The gateway decides at each request's root whether it is sampled (sampledParent): a request that
    // is not makes no span at all, so the SDK only ever sees parents to follow and roots to record.
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors,
  });
  // The global tracer provider and the W3C propagator; no context manager: contexts are passed
  // explicitly (shared/telemetry/tracing.ts), so the AsyncLocalStorage promise hooks are not installed.
  provider.register({ contextManager: null });
  enableTracing(true, t.sampleRatio);
  log.info(
    {
      exporter: t.exporter,
      endpoint: t.exporter === 'otlp' ? t.endpoint : undefined,
      sampleRatio: t.sampleRatio,
    },
    'tracing enabled',
  );
  return {
    async shutdown() {
      enableTracing(false);
      await provider.shutdown().catch((err: unknown) => log.warn({ err }, 'tracing shutdown failed'));
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** The node's Prometheus metrics, with the configured label bounds; undefined when turned off. */
export function metricsOf(config: GatewayConfig): GatewayMetrics | undefined {
  const tm = config.telemetry.metrics;
  return tm.enabled
    ? new GatewayMetrics({
        region: config.region,
        maxTools: tm.maxToolLabels,
        maxTenants: tm.maxTenantLabels,
      })
    : undefined;
}

/** What `exportStateMetrics` reads at every scrape (the owners keep plain counters). */
export interface StateSources {
  quotas?: {
    stats(): { refused: Record<string, number>; backends: Record<string, { waiting: number }> };
  };
  cache?: { counters: { hits: number; misses: number; staleServed: number } };
}

/**
 * `mcpgw_quota_refusals_total` (by dimension), `mcpgw_queue_depth` (per server) and
 * `mcpgw_cache_requests_total` (hit, miss, stale) from the quota guard's and the response cache's own
 * counters, read at scrape time: nothing is added to the request path.
 */
export function exportStateMetrics(metrics: GatewayMetrics | undefined, s: StateSources): void {
  if (!metrics) return;
  const seen = new Map<string, number>();
  /** Counters only grow: the difference since the last scrape is added. */
  const grow = (key: string, now: number, inc: (by: number) => void) => {
    const by = now - (seen.get(key) ?? 0);
    if (by > 0) inc(by);
    seen.set(key, now);
  };
  metrics.onScrape(() => {
    if (s.quotas) {
      const st = s.quotas.stats();
      for (const [dimension, n] of Object.entries(st.refused))
        grow(`q\0${dimension}`, n, (by) => metrics.quotaRefusals.inc({ dimension }, by));
      for (const [server, b] of Object.entries(st.backends)) metrics.setQueueDepth(server, b.waiting);
    }
    if (s.cache) {
      const c = s.cache.counters;
      grow('c\0hit', c.hits, (by) => metrics.cacheRequests.inc({ result: 'hit' }, by));
      grow('c\0miss', c.misses, (by) => metrics.cacheRequests.inc({ result: 'miss' }, by));
      grow('c\0stale', c.staleServed, (by) => metrics.cacheRequests.inc({ result: 'stale' }, by));
    }
  });
}
