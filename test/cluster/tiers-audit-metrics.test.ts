/**
 * Audit and metrics across the tier split, with edge and core as separate processes (`mcpgw start`,
 * role edge and role core), each with its own audit trail in the real Postgres (a schema each). Calls
 * made through the edge with the official SDK client are audited on both sides: the edge's record names
 * the core and region it forwarded to, the core's the backend server; both carry the caller, tenant,
 * target, outcome, latency and the same argument hash, request id and trace id, and both chains verify
 * with `mcpgw audit verify`. The core's own `/metrics` (its internal port) counts the calls as they flow.
 * A call no core can take (the core stopped) is still audited by the edge, as an error.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { canonicalJson } from '../../shared/canonical-json.js';
import type { AuditRecord } from '../../shared/ports/audit-sink.js';
import { connectWith, JwksServer, mint, signingKey } from '../helpers/auth.js';
import { mcpgw } from '../helpers/cli.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { makeSigningKey } from '../helpers/pki.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { parseMetrics, valueOf } from '../helpers/prometheus.js';

const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

describe(
  'audit on both sides and the core’s metrics (separate edge and core processes)',
  { timeout: 120_000 },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tier-audit-'));
    const edgeSchema = uniqueSchema('edgeaudit');
    const coreSchema = uniqueSchema('coreaudit');
    const files = { core: join(dir, 'core.json'), edge: join(dir, 'edge.json') };
    let core: ChildProcess | undefined;
    let edge: ChildProcess | undefined;
    let jwks: JwksServer;
    let client: Client;
    let coreUrl = '';
    let edgeUrl = '';

    async function spawnNode(file: string, doc: object): Promise<ChildProcess> {
      writeFileSync(file, JSON.stringify(doc));
      return spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/, {}, 60_000);
    }

    async function exported(file: string): Promise<AuditRecord[]> {
      const r = await mcpgw(['audit', 'export', '--config', file, '--region', 'eu']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as AuditRecord);
    }

    /** Polls the audit export until `n` records are there (the sinks write every 20 ms). */
    async function records(file: string, n: number): Promise<AuditRecord[]> {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const rs = await exported(file);
        if (rs.length >= n || Date.now() > deadline) return rs;
        await new Promise((r) => setTimeout(r, 200));
      }
    }

    async function scrape(): Promise<ReturnType<typeof parseMetrics>> {
      const r = await fetch(`${coreUrl}/metrics`);
      assert.equal(r.status, 200);
      return parseMetrics(await r.text());
    }

    before(async () => {
      jwks = await new JwksServer().start();
      const key = await signingKey('k1');
      jwks.keys = [key];
      const token = await mint(key, { sub: 'alice', tenant: 'acme', scope: 'mcp:access' });
      const edgeKey = makeSigningKey(dir, 'edge-signing');
      const jwk = createPublicKey(readFileSync(edgeKey.pub, 'utf8')).export({ format: 'jwk' });
      writeFileSync(join(dir, 'trusted.jwks.json'), JSON.stringify({ keys: [jwk] }));
      const [corePort, edgePort] = [await freePort(), await freePort()];
      const audit = { enabled: true, flushMs: 20 };
      core = await spawnNode(files.core, {
        role: 'core',
        region: 'eu',
        listen: { host: '127.0.0.1', port: corePort },
        log: { level: 'info' },
        store: { kind: 'postgres', url: PG_URL, schema: coreSchema },
        audit,
        internal: { id: 'core-eu-1', trustedKeys: [join(dir, 'trusted.jwks.json')] },
        servers: [
          {
            name: 'alpha',
            transport: 'stdio',
            command: process.execPath,
            args: [SCRIPTED],
            classification: 'Confidential',
            env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['echo'] }) },
          },
        ],
      });
      edge = await spawnNode(files.edge, {
        role: 'edge',
        region: 'eu',
        listen: { host: '127.0.0.1', port: edgePort },
        log: { level: 'info' },
        store: { kind: 'postgres', url: PG_URL, schema: edgeSchema },
        audit,
        cores: [{ region: 'eu', id: 'core-eu-1', url: `http://127.0.0.1:${corePort}` }],
        internal: { id: 'edge-eu', signingKey: edgeKey.priv },
        auth: {
          mode: 'jwt',
          jwt: { issuer: 'https://issuer.test', audience: 'https://gateway.test/mcp', jwksUrl: jwks.url },
        },
      });
      coreUrl = `http://127.0.0.1:${corePort}`;
      edgeUrl = `http://127.0.0.1:${edgePort}`;
      client = await connectWith(`${edgeUrl}/mcp`, { authorization: `Bearer ${token}` });
    });

    after(async () => {
      await client?.close().catch(() => {});
      await Promise.all([stopChild(edge), stopChild(core)]);
      await jwks?.stop();
      await Promise.all([dropSchema(edgeSchema), dropSchema(coreSchema)]);
      rmSync(dir, { recursive: true, force: true });
    });

    test('the core’s /metrics count the calls that flow through the edge', async () => {
      const ok = { method: 'tools/call', server: 'alpha', tenant: 'acme', outcome: 'ok' };
      const before = await scrape();
      const calls0 = valueOf(before, 'mcpgw_requests_total', ok);
      const latency0 = valueOf(before, 'mcpgw_backend_duration_seconds_count', {
        method: 'tools/call',
        server: 'alpha',
      });
      for (let i = 0; i < 3; i++) await client.callTool({ name: 'alpha__echo', arguments: { i } });
      const after = await scrape();
      assert.equal(valueOf(after, 'mcpgw_requests_total', ok), calls0 + 3);
      assert.equal(
        valueOf(after, 'mcpgw_backend_duration_seconds_count', { method: 'tools/call', server: 'alpha' }),
        latency0 + 3,
      );
      assert.ok(valueOf(after, 'mcpgw_requests_total', { method: 'tools/list' }) >= 0);
      assert.equal(valueOf(after, 'mcpgw_backend_up', { server: 'alpha', transport: 'stdio' }), 1);
      assert.ok(valueOf(after, 'mcpgw_sessions', { transport: 'internal' }) >= 1, 'the session is counted');
      assert.equal(valueOf(after, 'mcpgw_stdio_processes'), 1);
      // A refused call shows as an error outcome with its code.
      await assert.rejects(client.callTool({ name: 'alpha__nope', arguments: {} }));
      const refused = await scrape();
      assert.equal(
        valueOf(refused, 'mcpgw_requests_total', { method: 'tools/call', outcome: 'error' }) -
          valueOf(after, 'mcpgw_requests_total', { method: 'tools/call', outcome: 'error' }),
        1,
      );
    });

    test('a forwarded call is audited on the edge and on the core, and both chains verify', async () => {
      const args = { text: 'keep-me-out-of-the-audit', n: 7 };
      const argsHash = createHash('sha256').update(canonicalJson(args)).digest('hex');
      await client.callTool({
        name: 'alpha__echo',
        arguments: args,
        _meta: { traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` },
      });
      // 3 + 1 calls of the first test, then this one.
      const [edgeRecs, coreRecs] = await Promise.all([records(files.edge, 5), records(files.core, 5)]);
      assert.equal(edgeRecs.length, 5, JSON.stringify(edgeRecs));
      assert.equal(coreRecs.length, 5, JSON.stringify(coreRecs));
      const e = edgeRecs.find((r) => r.argsHash === argsHash);
      const c = coreRecs.find((r) => r.argsHash === argsHash);
      assert.ok(e && c, 'both sides recorded the call, with the same argument hash');
      for (const r of [e, c]) {
        assert.equal(r.subject, 'alice');
        assert.equal(r.tenant, 'acme');
        assert.equal(r.region, 'eu');
        assert.equal(r.method, 'tools/call');
        assert.equal(r.target, 'alpha__echo');
        assert.equal(r.decision, 'allow');
        assert.equal(r.outcome, 'ok');
        assert.equal(r.traceId, TRACE_ID);
        assert.ok(r.latencyMs > 0 && r.latencyMs < 10_000, String(r.latencyMs));
      }
      assert.equal(e.server, 'core:core-eu-1@eu', 'the edge names the core and region it forwarded to');
      assert.equal(c.server, 'alpha', 'the core names the backend');
      assert.equal(c.classification, 'Confidential');
      assert.equal(e.requestId, c.requestId, 'one request id on both sides');
      assert.ok(e.latencyMs >= c.latencyMs, 'the edge’s latency includes the hop to the core');
      // The refused call of the first test: an error on both sides, with the gateway's code.
      const ee = edgeRecs.find((r) => r.target === 'alpha__nope');
      const ce = coreRecs.find((r) => r.target === 'alpha__nope');
      assert.equal(ee?.outcome, 'error');
      assert.equal(ce?.outcome, 'error');
      assert.equal(ee?.errorCode, ce?.errorCode);
      for (const rs of [edgeRecs, coreRecs])
        assert.ok(!JSON.stringify(rs).includes('keep-me-out-of-the-audit'), 'arguments are never stored');
      for (const file of [files.edge, files.core]) {
        const v = await mcpgw(['audit', 'verify', '--config', file]);
        assert.equal(v.code, 0, v.stderr + v.stdout);
        assert.match(v.stdout, /region eu: 5 checked \(records 1-5.*chain intact/);
      }
    });

    test('with the core gone, the edge still audits the call it could not forward', async () => {
      await stopChild(core);
      await assert.rejects(client.callTool({ name: 'alpha__echo', arguments: { after: 'core' } }));
      const recs = await records(files.edge, 6);
      const last = recs.at(-1)!;
      assert.equal(recs.length, 6);
      assert.equal(last.subject, 'alice');
      assert.equal(last.target, 'alpha__echo');
      assert.equal(last.outcome, 'error');
      assert.equal(last.errorCode, 'GW_CORE_UNAVAILABLE');
      assert.equal(last.server, null, 'no core took it');
      const v = await mcpgw(['audit', 'verify', '--config', files.edge]);
      assert.equal(v.code, 0, v.stderr + v.stdout);
    });
  },
);
