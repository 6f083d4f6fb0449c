/**
 * Security events at the edge: IP allow and deny lists (CIDR, IPv4 and IPv6) refused with 403 before
 * anything else, and repeated authentication failures from one source raising an alert (a warn line and a
 * metric) and blocking that source for a while (429 with Retry-After). The auth module is not on this
 * branch: the failures are driven through the guard's `recordAuthFailure`, as the auth stage will call it.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { ConfigError } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { GatewayMetrics } from '../../shared/telemetry/metrics.js';
import { UsageAnalytics } from '../../shared/telemetry/usage.js';
import { SourceGuard } from '../../edge/security/source-guard.js';
import { buildEdgeApp } from '../../edge/http/app.js';
import { GatewayCore } from '../../core/mcp/gateway-core.js';
import { MemoryEventStore } from '../../shared/adapters/memory/event-store.js';
import { MemorySessionStore } from '../../shared/adapters/memory/session-store.js';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { parseMetrics, valueOf } from '../helpers/prometheus.js';

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
};

async function gateway(doc: Record<string, unknown>, lines?: string[]): Promise<RunningNode> {
  const config = validateConfig(
    { listen: { host: '127.0.0.1', port: 0 }, log: { level: lines ? 'warn' : 'silent' }, ...doc },
    'test',
    {},
  );
  const dest = lines && { write: (s: string) => void lines.push(s) };
  return startSingleNode(config, { log: createLogger(config.log.level, dest as never) });
}

describe('IP allow and deny lists', () => {
  const nodes: RunningNode[] = [];
  after(() => Promise.all(nodes.map((n) => n.close())));

  it('denies a source in denyIps (CIDR) on every route, before anything else', async () => {
    const gw = await gateway({ security: { denyIps: ['10.0.0.0/8', '127.0.0.0/8'] } });
    nodes.push(gw);
    for (const [method, path] of [
      ['POST', '/mcp'],
      ['GET', '/healthz'],
      ['GET', '/metrics'],
      ['GET', '/dashboard'],
    ] as const) {
      const r = await raw(`${gw.url}${path}`, {
        method,
        headers: { ...MCP_HEADERS, host: 'evil.example' },
        body: method === 'POST' ? INIT : undefined,
      });
      assert.equal(r.status, 403, path);
      assert.equal(r.json.error.data.code, 'GW_SOURCE_DENIED', `${path}: before the Host check`);
    }
    const s = parseMetrics((await gw.metrics!.render()).body);
    assert.equal(valueOf(s, 'mcpgw_source_refusals_total', { reason: 'denied' }), 4);
  });

  it('lets only allowIps in when the list is not empty', async () => {
    const outside = await gateway({ security: { allowIps: ['192.168.0.0/16', 'fd00::/8'] } });
    const inside = await gateway({ security: { allowIps: ['127.0.0.1/32'] } });
    nodes.push(outside, inside);
    const refused = await raw(`${outside.url}/mcp`, { headers: MCP_HEADERS, body: INIT });
    assert.equal(refused.status, 403);
    assert.equal(refused.json.error.data.code, 'GW_SOURCE_DENIED');
    const allowed = await raw(`${inside.url}/mcp`, { headers: MCP_HEADERS, body: INIT });
    assert.equal(allowed.status, 200, allowed.text);
  });

  it('matches IPv6 and IPv4-mapped addresses', () => {
    const log = createLogger('silent');
    const g = new SourceGuard({
      allowIps: ['::1', '10.1.0.0/16'],
      denyIps: ['10.1.2.0/24'],
      authFailures: { threshold: 3, windowMs: 1000, blockMs: 1000 },
      log,
    });
    assert.equal(g.check('::1').ok, true);
    assert.equal(g.check('::ffff:10.1.9.9').ok, true);
    assert.equal(g.check('10.1.2.3').ok, false, 'deny wins over allow');
    assert.equal(g.check('::ffff:10.1.2.3').ok, false);
    assert.equal(g.check('::2').ok, false);
    assert.equal(g.check('not-an-ip').ok, false);
  });

  it('refuses a bad list entry at config load, naming it', () => {
    assert.throws(
      () => validateConfig({ security: { denyIps: ['10.0.0.0/40', 'nonsense'] } }, 'test', {}),
      (err: unknown) =>
        err instanceof ConfigError &&
        /security\.denyIps\.0/.test(err.message) &&
        /denyIps\.1/.test(err.message),
    );
  });
});

describe('repeated authentication failures', () => {
  it('raise an alert and block the source for blockMs, then let it back in', () => {
    let now = 1_000_000;
    const lines: string[] = [];
    const metrics = new GatewayMetrics({ region: 'local', maxTools: 5, maxTenants: 5 });
    const g = new SourceGuard({
      allowIps: [],
      denyIps: [],
      authFailures: { threshold: 3, windowMs: 10_000, blockMs: 60_000 },
      log: createLogger('warn', { write: (s: string) => void lines.push(s) } as never),
      metrics,
      now: () => now,
    });
    g.recordAuthFailure('10.0.0.5');
    now += 20_000; // outside the window: this one starts over
    g.recordAuthFailure('10.0.0.5');
    g.recordAuthFailure('10.0.0.5');
    assert.equal(g.isBlocked('10.0.0.5'), false, 'two failures within the window');
    g.recordAuthFailure('10.0.0.5');
    assert.equal(g.isBlocked('10.0.0.5'), true);
    assert.equal(g.isBlocked('10.0.0.6'), false, 'only that source');
    const v = g.check('10.0.0.5');
    assert.deepEqual(v, { ok: false, code: 'GW_SOURCE_BLOCKED', retryAfterS: 60 });
    const alert = lines.map((l) => JSON.parse(l)).find((l) => l.alert === 'auth_failures');
    assert.equal(alert?.level, 40, 'a warn line');
    assert.equal(alert?.source, '10.0.0.5');
    now += 60_001;
    assert.equal(g.isBlocked('10.0.0.5'), false);
    assert.equal(g.check('10.0.0.5').ok, true);
  });

  it('a success clears the count; blockMs 0 alerts without blocking', () => {
    const g = new SourceGuard({
      allowIps: [],
      denyIps: [],
      authFailures: { threshold: 2, windowMs: 10_000, blockMs: 0 },
      log: createLogger('silent'),
    });
    g.recordAuthFailure('10.0.0.7');
    g.recordAuthSuccess('10.0.0.7');
    g.recordAuthFailure('10.0.0.7');
    assert.equal(g.isBlocked('10.0.0.7'), false);
    g.recordAuthFailure('10.0.0.7');
    assert.equal(g.isBlocked('10.0.0.7'), false, 'alert only');
  });

  it('at the edge: the blocked source gets 429 GW_SOURCE_BLOCKED with Retry-After, and the metrics say why', async () => {
    const lines: string[] = [];
    const gw = await gateway(
      { security: { authFailures: { threshold: 3, windowMs: 60_000, blockMs: 30_000 } } },
      lines,
    );
    try {
      const ok = await raw(`${gw.url}/mcp`, { headers: MCP_HEADERS, body: INIT });
      assert.equal(ok.status, 200);
      for (let i = 0; i < 3; i++) gw.security.recordAuthFailure('127.0.0.1');
      const r = await raw(`${gw.url}/mcp`, { headers: MCP_HEADERS, body: INIT });
      assert.equal(r.status, 429);
      assert.equal(r.json.error.data.code, 'GW_SOURCE_BLOCKED');
      assert.equal(r.headers.get('retry-after'), '30');
      const s = parseMetrics((await gw.metrics!.render()).body);
      assert.equal(valueOf(s, 'mcpgw_auth_failures_total'), 3);
      assert.equal(valueOf(s, 'mcpgw_security_alerts_total', { kind: 'auth_failures' }), 1);
      assert.equal(valueOf(s, 'mcpgw_source_refusals_total', { reason: 'blocked' }), 1);
      assert.ok(lines.some((l) => JSON.parse(l).alert === 'auth_failures'));
    } finally {
      await gw.close();
    }
  });
});

describe('sources off loopback (in-process requests with a chosen peer address)', () => {
  async function edge(doc: Record<string, unknown>) {
    const config = validateConfig({ log: { level: 'silent' }, ...doc }, 'test', {});
    const log = createLogger('silent');
    const core = new GatewayCore({ config, log });
    const built = buildEdgeApp({
      config,
      core,
      sessions: new MemorySessionStore(),
      events: new MemoryEventStore(config.sessions.eventRetention),
      log,
      metrics: new GatewayMetrics({ region: 'local', maxTools: 5, maxTenants: 5 }),
      usage: new UsageAnalytics(config.telemetry.usage),
    });
    await built.app.ready();
    return built.app;
  }

  it('without admin.token, the admin API and the dashboard answer loopback clients only', async () => {
    const app = await edge({});
    try {
      for (const url of ['/admin/usage', '/admin/topology', '/dashboard']) {
        const far = await app.inject({ method: 'GET', url, remoteAddress: '10.2.3.4' });
        assert.equal(far.statusCode, 403, url);
        assert.equal(far.json().error.data.code, 'GW_ADMIN_FORBIDDEN');
        const near = await app.inject({ method: 'GET', url, remoteAddress: '127.0.0.1' });
        assert.equal(near.statusCode, 200, url);
      }
    } finally {
      await app.close();
    }
  });

  it('denies by CIDR and lets the rest of an allowed range in', async () => {
    const app = await edge({ security: { allowIps: ['10.0.0.0/8'], denyIps: ['10.9.0.0/16'] } });
    try {
      const ok = await app.inject({ method: 'GET', url: '/healthz', remoteAddress: '10.1.1.1' });
      assert.equal(ok.statusCode, 200);
      const denied = await app.inject({ method: 'GET', url: '/healthz', remoteAddress: '10.9.1.1' });
      assert.equal(denied.statusCode, 403);
      assert.equal(denied.json().error.data.code, 'GW_SOURCE_DENIED');
      const outside = await app.inject({ method: 'GET', url: '/healthz', remoteAddress: '192.0.2.1' });
      assert.equal(outside.statusCode, 403);
    } finally {
      await app.close();
    }
  });
});
