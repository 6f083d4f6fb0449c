/**
 * Quotas in the split tiers (docs/quotas.md, "In the split tiers"): two `role: edge` processes with API
 * keys share the real Redis and decide each caller's own dimensions (user, concurrency) before
 * forwarding; the `role: core` behind them decides the per-tool limit, with the tenant it learns from
 * each request's internal token. 50 concurrent clients spread over both edges: the admitted requests
 * equal the user limit exactly, and the concurrency limit is never exceeded at the backend. A tenant's
 * per-tool override is enforced by the core, as a JSON-RPC error through a real SDK client.
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
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { makeSigningKey } from '../helpers/pki.js';
import { backendStats, startCountingBackend } from '../helpers/quota-fixtures.js';

const runFile = promisify(execFile);
const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const PEPPER = randomBytes(24).toString('base64url');
const INIT = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'load', version: '1' } },
};
const field = (out: string, name: string) => new RegExp(`^${name}: (\\S+)$`, 'm').exec(out)?.[1] ?? '';

describe('quotas at two edges sharing Redis, in front of one core', { timeout: 240_000 }, () => {
  const prefix = `mcpgw-test-qedges-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-quota-edges-'));
  const children: ChildProcess[] = [];
  const clients: Client[] = [];
  const keys: Record<string, string> = {};
  const shared = { sessions: { store: 'redis' }, redis: { url: REDIS_URL, keyPrefix: prefix } };
  let backend: { url: string; base: string; child: ChildProcess };
  let signing: { priv: string; pub: string };
  let corePort: number;
  let redis: Redis;

  async function spawnNode(name: string, doc: Record<string, unknown>): Promise<string> {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ store: { kind: 'memory' }, log: { level: 'info' }, ...doc }));
    const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
    children.push(child);
    return file;
  }

  /** Two edges with these caller quotas (Redis store, exact across both). */
  async function edges(name: string, quotas: object): Promise<string[]> {
    return Promise.all(
      [0, 1].map(async (i) => {
        const port = await freePort();
        await spawnNode(`${name}-${i}`, {
          role: 'edge',
          region: 'eu',
          listen: { host: '127.0.0.1', port },
          internal: { id: 'edge-eu', signingKey: signing.priv },
          cores: [{ region: 'eu', id: 'core-eu', url: `http://127.0.0.1:${corePort}` }],
          auth: { mode: 'api-key', apiKeys: { pepper: PEPPER, store: 'redis', cacheTtlMs: 60_000 } },
          // A busy test machine can stall Redis answers past the 100 ms default: a fallback decision would
          // (rightly) not be exact, and this test is about the exact path.
          quotas: { enabled: true, store: 'redis', expectedReplicas: 2, redisTimeoutMs: 5000, ...quotas },
          ...shared,
        });
        return `http://127.0.0.1:${port}/mcp`;
      }),
    );
  }

  /** One client with `key`: initialize at its edge, then tools/call; every POST's status. */
  async function client(url: string, key: string, calls: number, args: object): Promise<number[]> {
    const auth = { ...MCP_HEADERS, authorization: `Bearer ${key}` };
    const statuses: number[] = [];
    const init = await raw(url, { headers: auth, body: INIT });
    statuses.push(init.status);
    const sid = init.headers.get('mcp-session-id');
    if (!sid) return statuses;
    const headers = { ...auth, 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': sid };
    for (let i = 1; i <= calls; i++) {
      const r = await raw(url, {
        headers,
        body: {
          jsonrpc: '2.0',
          id: i,
          method: 'tools/call',
          params: { name: 'counting__slow', arguments: args },
        },
      });
      statuses.push(r.status);
    }
    return statuses;
  }

  async function sdkClient(url: string, key: string): Promise<Client> {
    const c = new Client({ name: 'quota-edges', version: '1' });
    await c.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${key}` } },
      }),
    );
    clients.push(c);
    return c;
  }

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping().catch((err: unknown) => {
      throw new Error(`these tests need a real Redis at ${REDIS_URL}: ${err}`);
    });
    backend = await startCountingBackend();
    signing = makeSigningKey(dir, 'edge-signing');
    corePort = await freePort();
    // The core decides the per-tool limit (none by default here; tenant acme: 3 a day).
    await spawnNode('core', {
      role: 'core',
      region: 'eu',
      listen: { host: '127.0.0.1', port: corePort },
      internal: { id: 'core-eu', trustedKeys: [signing.pub] },
      ...shared,
      quotas: {
        enabled: true,
        store: 'redis',
        redisTimeoutMs: 5000,
        user: false,
        clientApp: false,
        global: false,
        server: false,
        tool: false,
        concurrency: { perUser: false },
        tenants: { acme: { tool: { limit: 3, windowMs: 86_400_000 } } },
      },
      servers: [{ name: 'counting', transport: 'streamable-http', url: backend.url }],
    });
    // Keys live in the shared Redis: any edge's config file reaches them.
    const edgeFile = join(dir, 'keys-edge.json');
    writeFileSync(
      edgeFile,
      JSON.stringify({
        role: 'edge',
        region: 'eu',
        internal: { signingKey: signing.priv },
        cores: [{ region: 'eu', url: `http://127.0.0.1:${corePort}` }],
        auth: { mode: 'api-key', apiKeys: { pepper: PEPPER, store: 'redis' } },
        ...shared,
      }),
    );
    for (const [who, tenant] of [
      ['load', 'globex'],
      ['ann', 'acme'],
      ['bob', 'globex'],
    ] as const) {
      const r = await runFile(process.execPath, [
        MAIN,
        'keys',
        'create',
        '--config',
        edgeFile,
        '--owner',
        who,
        '--tenant',
        tenant,
        '--role',
        'reader',
      ]);
      keys[who] = field(r.stdout, 'key');
      assert.ok(keys[who], `a key for ${who}: ${r.stdout}`);
    }
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(children.map((c) => stopChild(c)));
    if (backend) await stopChild(backend.child);
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (found.length > 0) await redis.del(...found);
    } while (cursor !== '0');
    await redis.quit();
    rmSync(dir, { recursive: true, force: true });
  });

  test('50 clients on two edges: the admitted requests equal the user limit exactly', async () => {
    const LIMIT = 137;
    const urls = await edges('exact', {
      user: { limit: LIMIT, windowMs: 86_400_000 },
      tool: false,
      concurrency: { perUser: false },
    });
    const all = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client(urls[i % 2]!, keys.load!, 9, { ms: 1 })),
    );
    const statuses = all.flat();
    const refused = statuses.filter((s) => s === 429).length;
    assert.equal(
      statuses.length - refused,
      LIMIT,
      `admitted ${statuses.length - refused} of ${statuses.length}`,
    );
    assert.ok(
      statuses.every((s) => s === 429 || s === 200),
      `every answer is 200 or 429: ${[...new Set(statuses)].join(',')}`,
    );
    const perEdge = [0, 1].map(
      (e) =>
        all
          .filter((_, i) => i % 2 === e)
          .flat()
          .filter((s) => s !== 429).length,
    );
    assert.ok(
      perEdge.every((n) => n > 0),
      `both edges admitted some (the count is shared): ${perEdge.join(', ')}`,
    );
    // What the edges refused never reached the core: the backend saw only admitted calls.
    const stats = await backendStats(backend.base);
    assert.ok(stats.calls <= LIMIT, `the backend served ${stats.calls} calls`);
    // The refusal names the dimension, with the RateLimit fields.
    const r = await raw(urls[0]!, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${keys.load}` },
      body: INIT,
    });
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    assert.match(r.headers.get('ratelimit-policy') ?? '', /"user";q=137;w=86400/);
    assert.equal((r.json as { error: { data: { code: string } } }).error.data.code, 'GW_QUOTA_USER');
  });

  test('concurrency per user at two edges, reject mode: never more than 20 in flight', async () => {
    await fetch(`${backend.base}/reset`, { method: 'POST' });
    const urls = await edges('reject', { user: false, tool: false, concurrency: { perUser: 20 } });
    const all = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client(urls[i % 2]!, keys.load!, 4, { ms: 300 })),
    );
    const stats = await backendStats(backend.base);
    assert.ok(stats.maxInFlight <= 20, `backend saw ${stats.maxInFlight} calls in flight at once`);
    assert.ok(stats.maxInFlight >= 10, `the limit was approached (${stats.maxInFlight})`);
    const statuses = all.flat();
    assert.ok(statuses.includes(429), 'some requests were over the limit');
    assert.ok(
      statuses.every((s) => s === 200 || s === 429),
      [...new Set(statuses)].join(','),
    );

    // The core's per-tool limit follows the caller's tenant (from the internal token), through both edges.
    const ann = await sdkClient(urls[0]!, keys.ann!);
    const annThere = await sdkClient(urls[1]!, keys.ann!);
    for (const c of [ann, annThere, ann])
      assert.notEqual((await c.callTool({ name: 'counting__echo', arguments: { text: 'x' } })).isError, true);
    await assert.rejects(
      annThere.callTool({ name: 'counting__echo', arguments: { text: 'x' } }),
      (err: unknown) => {
        assert.ok(err instanceof McpError, String(err));
        assert.equal(err.code, -32029);
        const d = err.data as Record<string, unknown>;
        assert.equal(d.code, 'GW_QUOTA_TOOL');
        assert.equal(d.dimension, 'tool');
        assert.equal(d.limit, 3);
        return true;
      },
    );
    // Another tenant has no per-tool limit.
    const bob = await sdkClient(urls[1]!, keys.bob!);
    for (let i = 0; i < 5; i++)
      assert.notEqual(
        (await bob.callTool({ name: 'counting__echo', arguments: { text: 'y' } })).isError,
        true,
      );
  });
});
