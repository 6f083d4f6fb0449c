/**
 * The operator's endpoints on the main port: `/metrics` (Prometheus text, optionally behind a bearer
 * token), the admin API (`/admin/usage`, `/admin/topology`, `/admin/live`) and the dashboard page.
 *
 * Admin access: with `admin.token` configured, every admin call needs `Authorization: Bearer <token>`
 * (401 otherwise); without it, only loopback clients are answered (403 otherwise). The dashboard page itself
 * holds no data, so it is served to any client the source rule lets through; the page sends the token
 * (kept in sessionStorage, never in a URL) with each of its data calls.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError, toRpcError, type ErrorCode } from '../../shared/errors.js';
import type { GatewayConfig } from '../../shared/config/schema.js';
import { notInflight } from '../../shared/lifecycle/inflight.js';
import type { Logger } from '../../shared/log.js';
import type { ReadinessReport } from '../../shared/ports/core-service.js';
import type { GatewayMetrics } from '../../shared/telemetry/metrics.js';
import type { Topology } from '../../shared/telemetry/topology.js';
import { USAGE_DIMENSIONS, type UsageAnalytics, type UsageDimension } from '../../shared/telemetry/usage.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import { serverId } from '../../shared/mcp/server-versions.js';

export interface AdminRoutesOptions {
  config: GatewayConfig;
  log: Logger;
  metrics?: GatewayMetrics;
  usage?: UsageAnalytics;
  topology: Topology;
  readiness(): ReadinessReport;
  sessionCount(): number;
}

const LIVE_EVERY_MS = 1000;

export function registerAdminRoutes(app: FastifyInstance, o: AdminRoutesOptions): void {
  const m = o.config.telemetry.metrics;
  if (m.enabled && o.metrics) {
    const metrics = o.metrics;
    app.get(m.path, async (req, reply) => {
      if (m.bearerToken && !bearerMatches(req.headers.authorization, m.bearerToken))
        return refuse(reply, 'GW_METRICS_UNAUTHORIZED');
      const { contentType, body } = await metrics.render();
      return reply.code(200).header('content-type', contentType).send(body);
    });
  }

  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const code = adminRefusal(req, o.config.admin.token);
    if (code) return refuse(reply, code);
  };

  app.get('/dashboard', async (req, reply) => {
    // The page holds no data: a missing token is asked for by the page, a wrong source is still refused.
    if (!o.config.admin.token && !isLoopback(req.socket.remoteAddress))
      return refuse(reply, 'GW_ADMIN_FORBIDDEN');
    return reply
      .code(200)
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
      )
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'no-referrer')
      .send(DASHBOARD_HTML);
  });

  app.get('/admin/topology', { preHandler: guard }, async () => o.topology.snapshot());

  app.get('/admin/usage', { preHandler: guard }, async (req, reply) => {
    if (!o.usage) return refuse(reply, 'GW_INVALID_QUERY', 'Bad Request: usage analytics are off');
    const q = req.query as Record<string, unknown>;
    const by = (q.by ?? 'server') as UsageDimension;
    if (typeof by !== 'string' || !USAGE_DIMENSIONS.includes(by))
      return refuse(
        reply,
        'GW_INVALID_QUERY',
        `Bad Request: "by" must be one of ${USAGE_DIMENSIONS.join(', ')}`,
      );
    const since = parseSince(q.since, Date.now());
    if (since === null)
      return refuse(
        reply,
        'GW_INVALID_QUERY',
        'Bad Request: "since" must be an ISO-8601 time, epoch milliseconds, or a duration like 15m, 2h, 30s',
      );
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      return refuse(reply, 'GW_INVALID_QUERY', 'Bad Request: "limit" must be an integer from 1 to 1000');
    const { total, rows } = o.usage.query(by, since, limit);
    const windowStart = Date.now() - o.usage.windowMinutes * 60_000;
    return {
      by,
      since: new Date(Math.max(since ?? windowStart, windowStart)).toISOString(),
      until: new Date().toISOString(),
      windowMinutes: o.usage.windowMinutes,
      scope: 'process',
      total,
      rows,
    };
  });

  app.get('/admin/live', { preHandler: guard }, async (_req, reply) => {
    reply.hijack();
    const res = reply.raw;
    // The dashboard's stream never ends by itself: a drain does not wait for it.
    notInflight(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
    });
    const push = async () => {
      try {
        const snap = await liveSnapshot(o);
        if (!res.destroyed) res.write(`event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`);
      } catch (err) {
        o.log.warn({ err }, 'dashboard snapshot failed');
      }
    };
    await push();
    const timer = setInterval(() => void push(), LIVE_EVERY_MS);
    res.once('close', () => clearInterval(timer));
  });
}

/** One second of the dashboard: totals over the window, the last minute per second, health, tops. */
async function liveSnapshot(o: AdminRoutesOptions): Promise<Record<string, unknown>> {
  const usage = o.usage;
  const r = o.readiness();
  const transports = new Map(o.config.servers.map((s) => [serverId(s), s.transport]));
  const totals = o.metrics ? await o.metrics.totals() : { quotaRefusals: {}, authFailures: 0 };
  return {
    t: Date.now(),
    node: { role: o.config.role, region: o.config.region },
    window: usage ? usage.query('server').total : undefined,
    windowMinutes: usage?.windowMinutes,
    series: usage?.series(60) ?? [],
    sessions: o.sessionCount(),
    servers: Object.entries(r.servers).map(([name, st]) => ({
      name,
      transport: transports.get(name),
      state: st.state,
      ...(st.error !== undefined && { error: st.error }),
    })),
    quotaRefusals: totals.quotaRefusals,
    authFailures: totals.authFailures,
    topTools: usage?.query('tool', undefined, 10).rows ?? [],
    topTenants: usage?.query('tenant', undefined, 10).rows ?? [],
    topServers: usage?.query('server', undefined, 10).rows ?? [],
  };
}

/** `since` as epoch ms: undefined when absent, null when malformed. */
export function parseSince(v: unknown, now: number): number | undefined | null {
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string') return null;
  const d = /^(\d+)(s|m|h|d)$/.exec(v);
  if (d) return now - Number(d[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[d[2] as 's']!;
  if (/^\d{10,}$/.test(v)) return Number(v);
  const t = Date.parse(v);
  return Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(v) ? null : t;
}

function adminRefusal(req: FastifyRequest, token: string | undefined): ErrorCode | undefined {
  if (token) return bearerMatches(req.headers.authorization, token) ? undefined : 'GW_ADMIN_UNAUTHORIZED';
  return isLoopback(req.socket.remoteAddress) ? undefined : 'GW_ADMIN_FORBIDDEN';
}

/** Constant-time comparison of `Authorization: Bearer <token>` with the configured token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (typeof header !== 'string' || !/^bearer /i.test(header)) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(header.slice(7).trim()), digest(token));
}

export function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  return addr === '::1' || /^(::ffff:)?127\./.test(addr);
}

function refuse(reply: FastifyReply, code: ErrorCode, message?: string): FastifyReply {
  const err = new GatewayError(code, message);
  if (err.httpStatus === 401) reply.header('www-authenticate', 'Bearer');
  return reply
    .code(err.httpStatus)
    .header('content-type', 'application/json')
    .send(JSON.stringify(toRpcError(null, err)));
}
