/**
 * Virtual servers and stored policies with the tiers as separate processes: one `role: core` and two
 * `role: edge` processes on one Postgres schema (the registry, virtual servers and policies), sessions and
 * API keys in the real Redis. Official SDK clients through the edges check that a virtual server of the
 * core's config file is served at both edges (its chosen tools under their aliases, calls routed to the
 * right backends), that an unknown or another tenant's virtual server is the 404 that says so, that one
 * created, replaced and deleted through one edge's admin API is live at the other edge at once (open
 * sessions told list_changed, a deleted one's next request a 404), and that a tenant policy set through
 * an edge filters tools/list and refuses calls of sessions at both edges, and lets them through once
 * deleted.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { RedisApiKeyStore } from '../../shared/adapters/redis/api-key-store.js';
import { putApiKey } from '../helpers/auth.js';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { makeSigningKey } from '../helpers/pki.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const runFile = promisify(execFile);
const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const PEPPER = randomBytes(24).toString('base64url');

const stdio = (name: string, tools: string[], extra: Record<string, unknown> = {}) => ({
  name,
  transport: 'stdio',
  command: process.execPath,
  args: [SCRIPTED],
  env: { FIXTURE_CATALOG: JSON.stringify({ tools }), FIXTURE_NAME: name },
  ...extra,
});

const toolNames = async (c: SdkClient) =>
  ((await c.listTools()).tools as { name: string }[]).map((t) => t.name);
/** What the scripted backend says it ran: the backend tool's own name (not the alias). */
const ran = (r: { content?: unknown }) =>
  (JSON.parse((r.content as { text: string }[])[0]!.text) as { tool: string }).tool;
/** The gateway's refusal of a call (JSON-RPC error data.code and message). */
const refusal = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return { code: (err as { data?: { code?: string } }).data?.code, message: (err as Error).message };
  }
  return assert.fail('expected the request to be refused');
};
/** Resolves at the next notifications/tools/list_changed of `c`. */
const listChanged = (c: SdkClient) =>
  new Promise<void>((resolve) => c.onNotification('notifications/tools/list_changed', () => resolve()));

describe(
  'virtual servers and stored policies in the tier split (one core, two edges, one Postgres)',
  { timeout: 180_000 },
  () => {
    const prefix = `mcpgw-test-tiersvp-${randomBytes(6).toString('hex')}`;
    const schema = uniqueSchema('tiersvp');
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-tiers-vp-'));
    const children: ChildProcess[] = [];
    const clients: SdkClient[] = [];
    const edges: string[] = [];
    const keys: Record<string, string> = {};

    async function spawnNode(name: string, doc: Record<string, unknown>): Promise<void> {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(doc));
      children.push(
        await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/, {}, 60_000),
      );
    }

    const client = async (edge: string, path: string, who: string) => {
      const c = await connectSdk(
        'v2',
        `${edge}${path}`,
        {},
        {
          fetch: (url, init) => {
            const headers = new Headers(init?.headers);
            headers.set('x-api-key', keys[who]!);
            return fetch(url, { ...init, headers });
          },
        },
      );
      clients.push(c);
      return c;
    };

    /** A raw 2026-07-28 (stateless) request, with the headers a 2026 client sends. */
    const modern = (edge: string, path: string, who: string, method: string) =>
      raw(`${edge}${path}`, {
        headers: {
          ...MCP_HEADERS,
          'x-api-key': keys[who]!,
          'mcp-protocol-version': '2026-07-28',
          'mcp-method': method,
        },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method,
          params: {
            _meta: {
              'io.modelcontextprotocol/protocolVersion': '2026-07-28',
              'io.modelcontextprotocol/clientCapabilities': {},
              'io.modelcontextprotocol/clientInfo': { name: 'raw-2026', version: '1' },
            },
          },
        },
      });

    /** initialize over raw HTTP: the status and body a client that is refused sees. */
    const initialize = (edge: string, path: string, who: string) =>
      raw(`${edge}${path}`, {
        headers: { ...MCP_HEADERS, 'x-api-key': keys[who]! },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: {
            protocolVersion: '2025-11-25',
            capabilities: {},
            clientInfo: { name: 't', version: '1' },
          },
        },
      });

    const api = async (
      edge: string,
      method: string,
      path: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ) => {
      const res = await fetch(`${edge}/admin/api/v1${path}`, {
        method,
        headers: {
          'x-api-key': keys.ops!,
          ...(body !== undefined && { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const t = await res.text();
      return { status: res.status, json: t ? JSON.parse(t) : undefined };
    };

    before(async () => {
      const store = new RedisApiKeyStore(REDIS_URL, { keyPrefix: prefix });
      try {
        keys.ops = await putApiKey(store, PEPPER, 'ops', ['admin']);
        keys.ann = await putApiKey(store, PEPPER, 'ann', ['user'], 'acme');
        keys.bob = await putApiKey(store, PEPPER, 'bob', ['user'], 'acme');
        keys.gus = await putApiKey(store, PEPPER, 'gus', ['user'], 'globex');
      } finally {
        await store.close();
      }
      const signing = makeSigningKey(dir, 'edge-signing');
      const corePort = await freePort();
      const shared = {
        log: { level: process.env.MCPGW_TEST_LOG ?? 'info' },
        store: { kind: 'postgres', url: PG_URL, schema },
        sessions: { store: 'redis' },
        redis: { url: REDIS_URL, keyPrefix: prefix },
      };
      await spawnNode('core', {
        role: 'core',
        region: 'eu',
        listen: { host: '127.0.0.1', port: corePort },
        internal: { id: 'core-eu', trustedKeys: [signing.pub] },
        ...shared,
        servers: [stdio('crm', ['lookup', 'wipe']), stdio('search', ['query', 'reindex'])],
        virtualServers: [
          {
            name: 'desk',
            tenant: 'acme',
            description: 'The support desk',
            tools: [
              { server: 'crm', tool: 'lookup', alias: 'find_customer' },
              { server: 'search', tool: 'query' },
            ],
          },
        ],
      });
      const ports = [await freePort(), await freePort()];
      await Promise.all(
        ports.map((port, i) =>
          spawnNode(`edge-${i}`, {
            role: 'edge',
            region: 'eu',
            listen: { host: '127.0.0.1', port },
            internal: { id: `edge-${i}`, signingKey: signing.priv },
            cores: [{ region: 'eu', id: 'core-eu', url: `http://127.0.0.1:${corePort}` }],
            auth: { mode: 'api-key', apiKeys: { pepper: PEPPER, store: 'redis', cacheTtlMs: 60_000 } },
            ...shared,
          }),
        ),
      );
      edges.push(...ports.map((p) => `http://127.0.0.1:${p}`));
    });

    after(async () => {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await Promise.all(children.map((c) => stopChild(c)));
      const r = new Redis(REDIS_URL);
      const found = await r.keys(`${prefix}*`);
      if (found.length) await r.del(...found);
      await r.quit();
      await dropSchema(schema);
      rmSync(dir, { recursive: true, force: true });
    });

    test("the config file's virtual server at both edges: chosen tools, aliases, calls to the right backends", async () => {
      for (const edge of edges) {
        const c = await client(edge, '/v/desk/mcp', 'ann');
        assert.deepEqual(await toolNames(c), ['find_customer', 'query']);
        assert.equal(ran(await c.callTool({ name: 'find_customer', arguments: { id: 7 } })), 'lookup');
        assert.equal(ran(await c.callTool({ name: 'query', arguments: { q: 'x' } })), 'query');
        // Not chosen: it does not exist here, under its own name or the aggregate's.
        for (const name of ['wipe', 'lookup', 'crm__wipe'])
          assert.equal((await refusal(c.callTool({ name, arguments: {} }))).code, 'GW_UNKNOWN_TOOL');
      }
    });

    test("an unknown virtual server, or another tenant's, is the 404 that says so, at both edges", async () => {
      for (const edge of edges) {
        const foreign = await initialize(edge, '/v/desk/mcp', 'gus');
        assert.equal(foreign.status, 404, foreign.text);
        assert.equal(foreign.json.error.data.code, 'GW_UNKNOWN_VIRTUAL_SERVER');
        assert.equal(foreign.json.error.message, 'Unknown virtual server: desk');
        const unknown = await initialize(edge, '/v/nosuch/mcp', 'ann');
        assert.equal(unknown.status, 404, unknown.text);
        assert.equal(unknown.json.error.data.code, 'GW_UNKNOWN_VIRTUAL_SERVER');
        assert.equal(unknown.json.error.message, 'Unknown virtual server: nosuch');
        // Exactly the same answer: nothing to learn about another tenant's virtual servers.
        assert.equal(
          JSON.stringify(foreign.json).replaceAll('desk', 'X'),
          JSON.stringify(unknown.json).replaceAll('nosuch', 'X'),
        );
        const res = await fetch(`${edge}/v/desk/mcp`, {
          method: 'POST',
          headers: { ...MCP_HEADERS, 'x-api-key': 'not-a-key' },
          body: '{}',
        });
        assert.equal(res.status, 401, 'authentication comes first');
        // A 2026 (stateless) client meets the same: its own virtual server listed, the others a 404.
        const listed = await modern(edge, '/v/desk/mcp', 'ann', 'tools/list');
        assert.equal(listed.status, 200, listed.text);
        assert.deepEqual(
          (listed.json.result.tools as { name: string }[]).map((t) => t.name),
          ['find_customer', 'query'],
        );
        for (const [path, who] of [
          ['/v/desk/mcp', 'gus'],
          ['/v/nosuch/mcp', 'ann'],
        ] as const) {
          const r = await modern(edge, path, who, 'tools/list');
          assert.equal(r.status, 404, r.text);
          assert.equal(r.json.error.data.code, 'GW_UNKNOWN_VIRTUAL_SERVER');
        }
      }
    });

    test('created, replaced and deleted through one edge: live at the other edge, open sessions told', async (t) => {
      const [a, b] = edges as [string, string];
      const def = { name: 'triage', tools: [{ server: 'search', tool: 'reindex', alias: 'rebuild' }] };
      const created = await api(a, 'POST', '/virtual-servers', def);
      assert.equal(created.status, 201, JSON.stringify(created.json));
      assert.equal(created.json.endpoint, '/v/triage/mcp');
      // The very next request, at the other edge: no wait.
      const atB = await client(b, '/v/triage/mcp', 'gus');
      assert.deepEqual(await toolNames(atB), ['rebuild']);
      assert.equal(ran(await atB.callTool({ name: 'rebuild', arguments: {} })), 'reindex');
      const atA = await client(a, '/v/triage/mcp', 'ann');
      assert.deepEqual(await toolNames(atA), ['rebuild']);

      const heard = [listChanged(atA), listChanged(atB)];
      const next = { ...def, tools: [...def.tools, { server: 'crm', tool: 'lookup', alias: 'who' }] };
      assert.equal((await api(b, 'PUT', '/virtual-servers/triage', next, { 'if-match': '"7"' })).status, 409);
      const t0 = performance.now();
      const put = await api(b, 'PUT', '/virtual-servers/triage', next, { 'if-match': '"1"' });
      const answered = performance.now() - t0;
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.equal(put.json.version, 2);
      await Promise.all(heard); // both sessions, one at each edge, were told
      t.diagnostic(
        `virtual server PUT answered in ${answered.toFixed(1)} ms (cores synced); list_changed at both edges ${(performance.now() - t0).toFixed(1)} ms after it was sent`,
      );
      for (const c of [atA, atB]) {
        assert.deepEqual(await toolNames(c), ['rebuild', 'who']);
        assert.equal(ran(await c.callTool({ name: 'who', arguments: {} })), 'lookup');
      }
      // Both edges list it, with who changed it.
      for (const edge of edges) {
        const one = await api(edge, 'GET', '/virtual-servers/triage');
        assert.equal(one.json.version, 2);
        assert.equal(one.json.updatedBy, 'api-key:ops');
      }
      // Servers are the cores' config file's in the split: not changed through an edge, and it says so.
      const reg = await api(a, 'POST', '/servers', stdio('extra', ['x']));
      assert.equal(reg.status, 405, JSON.stringify(reg.json));
      assert.match(reg.json.error.message, /config file/);
      assert.equal((await api(a, 'GET', '/servers/crm')).status, 200, 'reads still work');
      // A server's catalog, read on the core that runs it.
      const caps = await api(b, 'GET', '/servers/crm/capabilities');
      assert.equal(caps.status, 200, JSON.stringify(caps.json));
      assert.equal(caps.json.state, 'ready');
      const capNames = (caps.json.tools as { name: string }[]).map((x) => x.name);
      assert.ok(capNames.includes('lookup') && capNames.includes('wipe'), capNames.join());

      assert.equal(
        (await api(a, 'DELETE', '/virtual-servers/triage', undefined, { 'if-match': '"2"' })).status,
        204,
      );
      // The open sessions' next requests, at either edge: the endpoint is gone, a 404 naming it.
      for (const c of [atA, atB])
        await assert.rejects(
          c.callTool({ name: 'rebuild', arguments: {} }),
          /Unknown virtual server: triage.*GW_UNKNOWN_VIRTUAL_SERVER/,
        );
      for (const edge of edges) {
        const gone = await initialize(edge, '/v/triage/mcp', 'gus');
        assert.equal(gone.status, 404);
        assert.equal(gone.json.error.data.code, 'GW_UNKNOWN_VIRTUAL_SERVER');
      }
      const log = await api(b, 'GET', '/changes?kind=virtual-server');
      assert.deepEqual(
        log.json.changes.map((x: { target: string; op: string; version: number }) => [
          x.target,
          x.op,
          x.version,
        ]),
        [
          ['triage', 'create', 1],
          ['triage', 'update', 2],
          ['triage', 'delete', 3],
        ],
      );
    });

    test("a tenant's stored policy set through one edge: enforced live for sessions at both edges", async (t) => {
      const [a, b] = edges as [string, string];
      const acme = [await client(a, '/mcp', 'ann'), await client(b, '/mcp', 'bob')];
      const desk = await client(b, '/v/desk/mcp', 'ann');
      const globex = await client(a, '/mcp', 'gus');
      // The scripted backend adds helper tools of its own (pid, crash...): the test looks at the ones it names.
      const crm = async (c: SdkClient) =>
        (await toolNames(c)).filter((n) => n === 'crm__lookup' || n === 'crm__wipe').sort();
      for (const c of [...acme, globex]) assert.deepEqual(await crm(c), ['crm__lookup', 'crm__wipe']);

      const heard = [...acme, desk].map(listChanged);
      const t0 = performance.now();
      const put = await api(
        b,
        'PUT',
        '/policies/acme',
        { default: 'allow', rules: [{ effect: 'deny', servers: ['crm'], tools: ['lookup'] }] },
        { 'if-match': '"0"' },
      );
      const answered = performance.now() - t0;
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.equal(put.json.version, 1);
      // The very next call of a session opened before, at either edge: refused as a tool that does not exist.
      for (const c of acme) {
        const err = await refusal(c.callTool({ name: 'crm__lookup', arguments: { id: 1 } }));
        assert.equal(err.code, 'GW_UNKNOWN_TOOL');
        assert.match(err.message, /Unknown tool: crm__lookup/);
      }
      await Promise.all(heard);
      t.diagnostic(
        `policy PUT answered in ${answered.toFixed(1)} ms (cores synced); list_changed at both edges within ${(performance.now() - t0).toFixed(1)} ms of sending it`,
      );
      for (const c of acme) assert.deepEqual(await crm(c), ['crm__wipe']);
      // The virtual server's alias of the denied tool is gone too; its other tool stays.
      assert.deepEqual(await toolNames(desk), ['query']);
      assert.equal(
        (await refusal(desk.callTool({ name: 'find_customer', arguments: {} }))).code,
        'GW_UNKNOWN_TOOL',
      );
      // Another tenant's callers are not concerned.
      assert.deepEqual(await crm(globex), ['crm__lookup', 'crm__wipe']);
      assert.equal(ran(await globex.callTool({ name: 'crm__lookup', arguments: {} })), 'lookup');

      // Deleted with the CLI, against the other edge: allowed again at once.
      const del = await runFile(
        process.execPath,
        [MAIN, 'policies', 'delete', 'acme', '--url', a, '--token', keys.ops!],
        { cwd: ROOT },
      );
      assert.match(del.stdout, /acme/);
      for (const c of acme)
        assert.equal(ran(await c.callTool({ name: 'crm__lookup', arguments: { id: 2 } })), 'lookup');
      assert.equal(ran(await desk.callTool({ name: 'find_customer', arguments: {} })), 'lookup');
      assert.equal((await api(b, 'GET', '/policies/acme')).status, 404);
    });
  },
);
