/**
 * The edge's security duties with the tiers as separate processes: two `role: edge` processes with API
 * key authentication (keys in the real Redis) in front of one `role: core` that holds the servers, the
 * tenancy and the policy. Real SDK clients check, through both edges, that a tenant's server is invisible
 * and uncallable for another tenant, that each caller sees and calls only what the policy grants, that a
 * session begun at one edge continues at the other for its owner only, and that a key revoked with the
 * CLI is refused by both edges at once, on a session already open too.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { makeSigningKey } from '../helpers/pki.js';

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
  env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
  ...extra,
});

const field = (out: string, name: string) => new RegExp(`^${name}: (\\S+)$`, 'm').exec(out)?.[1] ?? '';

describe(
  'two edges with API keys in front of one core: tenancy, policy, revocation',
  { timeout: 120_000 },
  () => {
    const prefix = `mcpgw-test-edges-${randomBytes(6).toString('hex')}`;
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-edges-auth-'));
    const children: ChildProcess[] = [];
    const clients: Client[] = [];
    const edges: string[] = [];
    let edgeConfig = '';
    const keys: Record<string, string> = {};
    const ids: Record<string, string> = {};

    async function spawnNode(name: string, doc: { listen: { port: number } }): Promise<string> {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify({ store: { kind: 'memory' }, ...doc }));
      const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
      children.push(child);
      return `http://127.0.0.1:${doc.listen.port}`;
    }

    async function mcpgw(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
      try {
        const r = await runFile(process.execPath, [MAIN, ...args], { cwd: ROOT });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    }

    /** A v2 SDK client with `key`, whose requests go to whichever edge `target()` names. */
    async function client(key: string, target: () => string, path = '/mcp'): Promise<Client> {
      const fetchVia = (url: string | URL, init?: RequestInit) => {
        const u = new URL(String(url));
        const t = new URL(target());
        u.host = t.host;
        return fetch(u, init);
      };
      const c = new Client({ name: 'edges-auth', version: '1' });
      await c.connect(
        new StreamableHTTPClientTransport(new URL(`${target()}${path}`), {
          fetch: fetchVia,
          requestInit: { headers: { authorization: `Bearer ${key}` } },
        }),
      );
      clients.push(c);
      return c;
    }

    // The scripted fixture adds helper tools of its own (pid, crash, ...): the test looks at the ones it names.
    const NAMED = new Set(['crm__lookup', 'crm__wipe', 'search__query', 'search__reindex']);
    const toolNames = async (c: Client) =>
      (await c.listTools()).tools
        .map((t) => t.name)
        .filter((n) => NAMED.has(n))
        .sort();

    before(async () => {
      const signing = makeSigningKey(dir, 'edge-signing');
      const corePort = await freePort();
      const shared = { sessions: { store: 'redis' }, redis: { url: REDIS_URL, keyPrefix: prefix } };
      await spawnNode('core', {
        role: 'core',
        region: 'eu',
        listen: { host: '127.0.0.1', port: corePort },
        internal: { id: 'core-eu', trustedKeys: [signing.pub] },
        ...shared,
        servers: [
          stdio('crm', ['lookup', 'wipe'], { tenant: 'acme' }),
          stdio('search', ['query', 'reindex']),
        ],
        policy: {
          default: 'deny',
          rules: [
            { description: 'admins use everything', roles: ['admin'] },
            { description: 'readers look things up', roles: ['reader'], tools: ['lookup', 'query'] },
          ],
        },
      } as never);
      const edgeDoc = (port: number) => ({
        role: 'edge',
        region: 'eu',
        listen: { host: '127.0.0.1', port },
        internal: { id: 'edge-eu', signingKey: signing.priv },
        cores: [{ region: 'eu', id: 'core-eu', url: `http://127.0.0.1:${corePort}` }],
        auth: { mode: 'api-key', apiKeys: { pepper: PEPPER, store: 'redis', cacheTtlMs: 60_000 } },
        ...shared,
      });
      const ports = [await freePort(), await freePort()];
      edgeConfig = join(dir, 'edge-0.json');
      edges.push(...(await Promise.all(ports.map((p, i) => spawnNode(`edge-${i}`, edgeDoc(p) as never)))));

      for (const [who, tenant, role] of [
        ['acme-reader', 'acme', 'reader'],
        ['acme-admin', 'acme', 'admin'],
        ['globex-reader', 'globex', 'reader'],
      ] as const) {
        const r = await mcpgw([
          'keys',
          'create',
          '--config',
          edgeConfig,
          '--owner',
          who,
          '--tenant',
          tenant,
          '--role',
          role,
        ]);
        assert.equal(r.code, 0, r.stderr);
        keys[who] = field(r.stdout, 'key');
        ids[who] = field(r.stdout, 'id');
      }
    });

    after(async () => {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await Promise.all(children.map((c) => stopChild(c)));
      const r = new Redis(REDIS_URL);
      const found = await r.keys(`${prefix}*`);
      if (found.length) await r.del(...found);
      await r.quit();
      rmSync(dir, { recursive: true, force: true });
    });

    test('a tenant’s server is invisible and uncallable for another tenant, at either edge', async () => {
      for (const edge of edges) {
        const acme = await client(keys['acme-reader']!, () => edge);
        assert.deepEqual(await toolNames(acme), ['crm__lookup', 'search__query']);
        const r = await acme.callTool({ name: 'crm__lookup', arguments: { id: 7 } });
        assert.match(JSON.stringify(r.content), /lookup/);

        const globex = await client(keys['globex-reader']!, () => edge);
        assert.deepEqual(await toolNames(globex), ['search__query']);
        // Exactly the answer of a tool that does not exist: nothing to learn about acme's servers.
        const hidden = await globex
          .callTool({ name: 'crm__lookup', arguments: { id: 7 } })
          .catch((e: Error) => e);
        const missing = await globex.callTool({ name: 'crm__nothing', arguments: {} }).catch((e: Error) => e);
        assert.ok(hidden instanceof Error, 'the hidden tool was called');
        assert.match(hidden.message, /unknown tool/i);
        assert.equal(
          hidden.message.replace('lookup', 'X'),
          (missing as Error).message.replace('nothing', 'X'),
        );
        // And its per-server endpoint is the 404 of a server that does not exist.
        const res = await fetch(`${edge}/servers/crm/mcp`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${keys['globex-reader']}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: {
              protocolVersion: '2025-11-25',
              capabilities: {},
              clientInfo: { name: 't', version: '1' },
            },
          }),
        });
        assert.equal(res.status, 404);
      }
    });

    test('each caller sees and calls only what the policy grants it', async () => {
      const reader = await client(keys['acme-reader']!, () => edges[1]!);
      const admin = await client(keys['acme-admin']!, () => edges[1]!);
      assert.deepEqual(await toolNames(admin), [
        'crm__lookup',
        'crm__wipe',
        'search__query',
        'search__reindex',
      ]);
      const denied = await reader.callTool({ name: 'search__reindex', arguments: {} }).catch((e: Error) => e);
      assert.ok(denied instanceof Error && /unknown tool/i.test(denied.message), String(denied));
      const r = await admin.callTool({ name: 'search__reindex', arguments: {} });
      assert.match(JSON.stringify(r.content), /reindex/);
    });

    test('a session begun at one edge continues at the other, for its owner only', async () => {
      let target = edges[0]!;
      const c = await client(keys['acme-reader']!, () => target);
      await c.callTool({ name: 'search__query', arguments: { q: 'a' } });
      target = edges[1]!;
      const r = await c.callTool({ name: 'search__query', arguments: { q: 'b' } });
      assert.match(JSON.stringify(r.content), /query/);
      const sessionId = (c.transport as StreamableHTTPClientTransport).sessionId!;
      assert.ok(sessionId);
      // Another tenant's valid key presenting that session id: the 404 of a session that does not exist.
      const res = await fetch(`${edges[1]}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${keys['globex-reader']}`,
          'mcp-session-id': sessionId,
          'mcp-protocol-version': '2025-11-25',
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
      });
      assert.equal(res.status, 404);
      assert.match(await res.text(), /GW_SESSION_NOT_FOUND/);
    });

    test('a key revoked with the CLI is refused by both edges at once, on an open session too', async () => {
      const open = await client(keys['acme-admin']!, () => edges[0]!);
      await open.callTool({ name: 'search__query', arguments: { q: 'before' } });
      // Both edges have the key cached (cacheTtlMs is a minute): only the announcement can drop it.
      for (const edge of edges) await toolNames(await client(keys['acme-admin']!, () => edge));
      const revoked = await mcpgw(['keys', 'revoke', '--config', edgeConfig, ids['acme-admin']!]);
      assert.equal(revoked.code, 0, revoked.stderr);
      for (const edge of edges) {
        const deadline = Date.now() + 2_000;
        for (;;) {
          const res = await fetch(`${edge}/mcp`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${keys['acme-admin']}`,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
            },
            body: JSON.stringify({
              jsonrpc: '2.0',
              id: 1,
              method: 'initialize',
              params: {
                protocolVersion: '2025-11-25',
                capabilities: {},
                clientInfo: { name: 't', version: '1' },
              },
            }),
          });
          if (res.status === 401) {
            assert.match(res.headers.get('www-authenticate') ?? '', /invalid_token.*revoked/);
            break;
          }
          assert.ok(Date.now() < deadline, `edge ${edge} still accepts the revoked key (${res.status})`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      await assert.rejects(
        () => open.callTool({ name: 'search__query', arguments: { q: 'after' } }),
        /401|revoked|invalid_token/i,
      );
      // The other keys are untouched.
      assert.deepEqual(await toolNames(await client(keys['acme-reader']!, () => edges[1]!)), [
        'crm__lookup',
        'search__query',
      ]);
    });
  },
);
