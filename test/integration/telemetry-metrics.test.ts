/**
 * Metrics and usage analytics as an operator sees them: `/metrics` scraped before and after traffic from a
 * real SDK client, series that move with it, bounded labels, the bearer token; `/admin/usage` and
 * `/admin/topology` behind the admin token.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { recorderHttp } from '../fixtures/trace-recorder.js';
import { raw } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { parseMetrics, valueOf, type Sample } from '../helpers/prometheus.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const METRICS_TOKEN = 'metrics-token-0123456789';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

describe('metrics and usage analytics', () => {
  let http: { url: string; server: Server };
  let gw: RunningNode;
  let client: SdkClient;

  before(async () => {
    http = await recorderHttp();
    const config = validateConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: 'silent' },
        telemetry: { metrics: { bearerToken: METRICS_TOKEN, maxToolLabels: 2 } },
        admin: { token: ADMIN_TOKEN },
        servers: [
          {
            name: 'recstdio',
            transport: 'stdio',
            command: process.execPath,
            args: [`${ROOT}dist/test/fixtures/scripted-server.js`],
            env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['echo', 'other_a', 'other_b'] }) },
          },
          { name: 'rechttp', transport: 'streamable-http', url: http.url },
        ],
      },
      'test',
      {},
    );
    gw = await startSingleNode(config, { log: createLogger('silent') });
    client = await connectSdk('v2', `${gw.url}/mcp`);
  });
  after(async () => {
    await client?.close();
    await gw?.close();
    http?.server.close();
  });

  const scrape = async (): Promise<Sample[]> => {
    const r = await raw(`${gw.url}/metrics`, {
      method: 'GET',
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    return parseMetrics(r.text);
  };
  const admin = (path: string, token: string | null = ADMIN_TOKEN) =>
    raw(`${gw.url}${path}`, { method: 'GET', headers: token ? { authorization: `Bearer ${token}` } : {} });

  it('refuses a scrape without the bearer token', async () => {
    const r = await raw(`${gw.url}/metrics`, { method: 'GET' });
    assert.equal(r.status, 401);
    assert.equal(r.json.error.data.code, 'GW_METRICS_UNAUTHORIZED');
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  });

  it('counts requests by method, tool, server, tenant, region and outcome as traffic flows', async () => {
    const before = await scrape();
    const okLabels = {
      method: 'tools/call',
      tool: 'rechttp__whoami',
      server: 'rechttp',
      tenant: 'default',
      region: 'local',
      outcome: 'ok',
    };
    for (let i = 0; i < 3; i++) await client.callTool({ name: 'rechttp__whoami', arguments: {} });
    await client.callTool({ name: 'recstdio__echo', arguments: { x: 1 } });
    await client.callTool({ name: 'nosuch__tool', arguments: {} }).catch(() => undefined);
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) =>
      valueOf(after, name, labels) - valueOf(before, name, labels);

    assert.equal(delta('mcpgw_requests_total', okLabels), 3);
    assert.equal(
      delta('mcpgw_requests_total', { method: 'tools/call', server: 'recstdio', outcome: 'ok' }),
      1,
    );
    assert.equal(delta('mcpgw_requests_total', { method: 'tools/call', outcome: 'error' }), 1);
    assert.equal(delta('mcpgw_errors_total', { code: 'GW_UNKNOWN_TOOL' }), 1);
    assert.equal(
      delta('mcpgw_backend_duration_seconds_count', { method: 'tools/call', server: 'rechttp' }),
      3,
    );
    assert.ok(delta('mcpgw_request_gateway_duration_seconds_count', { method: 'tools/call' }) >= 5);
    assert.equal(valueOf(after, 'mcpgw_backend_up', { server: 'rechttp', transport: 'streamable-http' }), 1);
    assert.equal(valueOf(after, 'mcpgw_backend_up', { server: 'recstdio', transport: 'stdio' }), 1);
    // The pool's breaker of the HTTP server's one replica, closed (0) while it answers.
    assert.equal(valueOf(after, 'mcpgw_breaker_state', { server: 'rechttp', replica: http.url }), 0);
    assert.equal(valueOf(after, 'mcpgw_stdio_processes'), 1);
    assert.ok(valueOf(after, 'mcpgw_sessions', { transport: 'streamable-http' }) >= 1);
    assert.ok(after.some((s) => s.name === 'mcpgw_sse_streams'));
    // Never a session id or a user id among the labels.
    for (const s of after) {
      assert.equal(s.labels.session, undefined);
      assert.equal(s.labels.user, undefined);
      assert.equal(s.labels.session_id, undefined);
    }
  });

  it('caps the tool label: names beyond the configured number count as "other"', async () => {
    await client.callTool({ name: 'recstdio__other_a', arguments: {} });
    await client.callTool({ name: 'recstdio__other_b', arguments: {} });
    const samples = await scrape();
    const tools = new Set(
      samples.filter((s) => s.name === 'mcpgw_requests_total' && s.labels.tool).map((s) => s.labels.tool),
    );
    assert.ok(tools.has('other'), `tool labels: ${[...tools].join(', ')}`);
    assert.ok(tools.size <= 3, `at most 2 names plus "other": ${[...tools].join(', ')}`);
  });

  it('exposes the series other modules record into (breakers, quotas, cache, queues, federation)', async () => {
    const m = gw.metrics!;
    m.setBreakerState('rechttp', 'r1', 'open');
    m.recordQuotaRefusal('tenant');
    m.recordCacheRequest('hit');
    m.setQueueDepth('rechttp', 4);
    m.setFederationLag('eu', 1.5);
    m.setRegionUp('eu', false);
    const s = await scrape();
    assert.equal(valueOf(s, 'mcpgw_breaker_state', { server: 'rechttp', replica: 'r1' }), 2);
    assert.equal(valueOf(s, 'mcpgw_quota_refusals_total', { dimension: 'tenant' }), 1);
    assert.equal(valueOf(s, 'mcpgw_cache_requests_total', { result: 'hit' }), 1);
    assert.equal(valueOf(s, 'mcpgw_queue_depth', { server: 'rechttp' }), 4);
    assert.equal(valueOf(s, 'mcpgw_federation_lag_seconds', { region: 'eu' }), 1.5);
    assert.equal(valueOf(s, 'mcpgw_region_up', { region: 'eu' }), 0);
  });

  it('answers usage by server, tenant and user as JSON', async () => {
    const byServer = await admin('/admin/usage?by=server&since=1h');
    assert.equal(byServer.status, 200, byServer.text);
    assert.equal(byServer.json.scope, 'process');
    const http = byServer.json.rows.find((r: { key: string }) => r.key === 'rechttp');
    assert.ok(http, JSON.stringify(byServer.json.rows));
    assert.equal(http.count, 3);
    assert.equal(http.errors, 0);
    assert.ok(http.p50Ms > 0 && http.p95Ms >= http.p50Ms, JSON.stringify(http));
    const gwRow = byServer.json.rows.find((r: { key: string }) => r.key === '(gateway)');
    assert.ok(gwRow.errors >= 1, 'the unknown tool is an error the gateway answered');

    const byTenant = await admin('/admin/usage?by=tenant');
    assert.equal(byTenant.json.rows[0].key, 'default');
    assert.equal(byTenant.json.rows[0].count, byTenant.json.total.count);
    const byUser = await admin(`/admin/usage?by=user&since=${encodeURIComponent(new Date(0).toISOString())}`);
    assert.equal(byUser.json.rows[0].key, 'anonymous');
    const byTool = await admin('/admin/usage?by=tool&limit=1');
    assert.equal(byTool.json.rows.length, 1);
    assert.equal(byTool.json.rows[0].key, 'rechttp__whoami');
  });

  it('refuses bad usage queries with a message naming the problem', async () => {
    const bad = await admin('/admin/usage?by=session');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.data.code, 'GW_INVALID_QUERY');
    assert.match(bad.json.error.message, /"by" must be one of/);
    const since = await admin('/admin/usage?since=yesterday');
    assert.equal(since.status, 400);
    assert.match(since.json.error.message, /"since"/);
  });

  it('protects the admin API with the admin token', async () => {
    for (const path of ['/admin/usage', '/admin/topology', '/admin/live']) {
      const none = await admin(path, null);
      assert.equal(none.status, 401, path);
      assert.equal(none.json.error.data.code, 'GW_ADMIN_UNAUTHORIZED');
      const wrong = await admin(path, 'not-the-admin-token-xx');
      assert.equal(wrong.status, 401, path);
    }
  });

  it('reports the topology: this node and its servers with transport and health', async () => {
    const t = await admin('/admin/topology');
    assert.equal(t.status, 200);
    assert.deepEqual(t.json.node.role, 'single');
    assert.deepEqual(
      t.json.servers.map((s: { name: string; transport: string; state: string }) => [
        s.name,
        s.transport,
        s.state,
      ]),
      [
        ['recstdio', 'stdio', 'ready'],
        ['rechttp', 'streamable-http', 'ready'],
      ],
    );
    assert.ok(Array.isArray(t.json.regions) && Array.isArray(t.json.replicas));
  });
});
