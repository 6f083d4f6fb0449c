/**
 * The operator's endpoints of a core node (role core), on its internal port beside the internal API:
 * `/metrics` (the core's request metrics: it is where requests are observed in the tier split) and the
 * admin API (`/admin/usage`, `/admin/topology`, `/admin/live`) under the same admin rules as the edge's.
 * The routes are the edge's own (edge/http/admin.ts) on a Fastify instance without a listener: the core's
 * node:http server hands it the requests for these paths.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify from 'fastify';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { GatewayMetrics } from '../shared/telemetry/metrics.js';
import { Topology } from '../shared/telemetry/topology.js';
import type { UsageAnalytics } from '../shared/telemetry/usage.js';
import type { GatewayCore } from '../core/mcp/gateway-core.js';
import { registerAdminRoutes } from '../edge/http/admin.js';

export interface CoreOps {
  /** True for the paths this app answers (the rest go to the internal API). */
  handles(url: string | undefined): boolean;
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

export async function coreOps(o: {
  config: GatewayConfig;
  log: Logger;
  core: GatewayCore;
  coreId: string;
  metrics?: GatewayMetrics;
  usage: UsageAnalytics;
  sessionCount(): number;
}): Promise<CoreOps> {
  const app = Fastify({ logger: false });
  const servers = () => {
    const r = o.core.readiness();
    return o.config.servers
      .filter((s) => s.enabled)
      .map((s) => ({ name: s.name, transport: s.transport, ...r.servers[s.name] }));
  };
  const topology = new Topology();
  topology.set('node', () => ({ role: 'core', region: o.config.region, replica: o.coreId }));
  topology.set('servers', servers);
  topology.set('cores', () => [{ region: o.config.region, replica: o.coreId }]);
  if (o.metrics) {
    const metrics = o.metrics;
    metrics.onScrape(() => {
      metrics.sessions.set({ transport: 'internal' }, o.sessionCount());
      let stdio = 0;
      for (const s of servers()) {
        const up = s.state === 'ready';
        metrics.backendUp.set({ server: s.name, transport: s.transport }, up ? 1 : 0);
        if (up && s.transport === 'stdio') stdio++;
        for (const r of (s.pool?.replicas ?? []) as { id?: unknown; breaker?: unknown }[]) {
          const state = r.breaker === 'open' ? 'open' : r.breaker === 'closed' ? 'closed' : 'half_open';
          metrics.setBreakerState(s.name, String(r.id), state);
        }
      }
      metrics.stdioProcesses.set(stdio);
    });
  }
  registerAdminRoutes(app, {
    config: o.config,
    log: o.log,
    metrics: o.metrics,
    usage: o.usage,
    topology,
    readiness: () => o.core.readiness(),
    sessionCount: o.sessionCount,
  });
  await app.ready();
  const metricsPath = o.config.telemetry.metrics.enabled ? o.config.telemetry.metrics.path : undefined;
  return {
    handles(url) {
      const path = (url ?? '/').split('?')[0];
      return path === metricsPath || path!.startsWith('/admin/');
    },
    handle: (req, res) => app.routing(req, res),
    close: () => app.close(),
  };
}
