/**
 * One store decision per call on a single node (docs/quotas.md, "One decision per call"): with the real
 * Redis, a `tools/call` in a session decides the caller's dimensions, the concurrency slot, the replica's
 * budget and the per-tool limit in one script call (Redis MONITOR counts them), and gives its slot back
 * with one ZREM. The caller's refusals stay what they were (HTTP 429 with Retry-After and the RateLimit
 * fields), and a call that never reaches the pool still counts against the caller.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, rawSession } from '../helpers/gateway.js';
import { stopChild } from '../helpers/net.js';
import { clientAs, startCountingBackend, startQuotaGateway } from '../helpers/quota-fixtures.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('one quota decision per call (Redis)', { timeout: 60_000 }, () => {
  const prefix = `mcpgw-test-onedecision-${randomBytes(6).toString('hex')}`;
  let backend: { url: string; base: string; child: ChildProcess };
  let gw: RunningNode;
  let redis: Redis;

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping();
    backend = await startCountingBackend();
    gw = await startQuotaGateway({
      redis: { url: REDIS_URL, keyPrefix: prefix },
      servers: [{ name: 'counting', transport: 'streamable-http', url: backend.url }],
      quotas: {
        enabled: true,
        store: 'redis',
        redisTimeoutMs: 5000,
        user: { limit: 6, windowMs: 3_600_000 },
        tool: { limit: 100, windowMs: 60_000 },
        server: { limit: 1000, windowMs: 60_000 },
        concurrency: { perUser: 20 },
      },
    });
  });
  after(async () => {
    await gw?.close();
    if (backend) await stopChild(backend.child);
    const found = await redis.keys(`${prefix}*`);
    if (found.length > 0) await redis.del(...found);
    await redis.quit();
  });

  /** The commands a client sent naming this test's keys while `fn` runs, as MONITOR shows them. */
  async function monitored(fn: () => Promise<unknown>): Promise<string[][]> {
    const mon = await redis.monitor(); // a connection of its own
    const seen: string[][] = [];
    mon.on('monitor', (_time: string, args: string[], source: string) => {
      // MONITOR also shows the commands a script runs, with "lua" as their source: those are not round trips.
      if (source !== 'lua' && args.some((a) => a.startsWith(prefix))) seen.push(args);
    });
    try {
      await fn();
      await new Promise((r) => setTimeout(r, 200)); // the release is sent after the answer
    } finally {
      mon.disconnect();
    }
    return seen;
  }

  test('a tools/call is one script call for all its dimensions, and one ZREM for its slot', async (t) => {
    const ann = await clientAs(`${gw.url}/mcp`, 'ann'); // initialize, initialized: 2 units
    t.after(() => ann.close());
    const seen = await monitored(() => ann.callTool({ name: 'counting__echo', arguments: { text: 'a' } }));
    const scripts = seen.filter((c) => /^(evalsha|eval)$/i.test(c[0]!));
    assert.equal(scripts.length, 1, `one script call: ${JSON.stringify(seen.map((c) => c.slice(0, 3)))}`);
    const keys = scripts[0]!.slice(3, 3 + Number(scripts[0]![2])).map((k) => decodeURIComponent(k));
    for (const part of [
      'user:default:ann',
      'global',
      'server:counting:',
      'tool:default:ann:counting/echo',
      'conc:',
    ])
      assert.ok(
        keys.some((k) => k.includes(part)),
        `the decision names the ${part} key: ${keys.join(' ')}`,
      );
    assert.equal(seen.filter((c) => c[0]!.toLowerCase() === 'zrem').length, 1, 'the slot given back');
    assert.equal(seen.length, 2, `nothing else: ${JSON.stringify(seen.map((c) => c[0]))}`);

    // A call the pool never sees (no such tool) still costs the caller a unit, decided alone.
    const r = await raw(`${gw.url}/mcp`, {
      headers: {
        ...MCP_HEADERS,
        'x-test-user': 'bob',
        'mcp-session-id': await rawSession(`${gw.url}/mcp`, {}, { 'x-test-user': 'bob' }),
        'mcp-protocol-version': '2025-11-25',
      },
      body: {
        jsonrpc: '2.0',
        id: 5,
        method: 'tools/call',
        params: { name: 'counting__nope', arguments: {} },
      },
    });
    assert.equal(r.status, 200);
    assert.ok(r.json.error, 'an error answer for the unknown tool');
    // bob: initialize, initialized, this call: 3 of 6.
    assert.match(r.headers.get('ratelimit') ?? '', /"user";r=3;/);

    // ann's budget: 2 + 1 spent; three more calls, then the HTTP 429 it always was.
    for (let i = 0; i < 3; i++)
      await ann.callTool({ name: 'counting__echo', arguments: { text: String(i) } });
    await assert.rejects(ann.callTool({ name: 'counting__echo', arguments: { text: 'x' } }), (err: Error) => {
      assert.equal((err as Error & { code?: number }).code, 429, 'the SDK reports the HTTP status');
      assert.match(err.message, /GW_QUOTA_USER/);
      return true;
    });
  });

  test('a 2026-07-28 call sent with a session id of its own making is still charged', async () => {
    const r = await raw(`${gw.url}/mcp`, {
      headers: {
        ...MCP_HEADERS,
        'x-test-user': 'dan',
        'mcp-session-id': 'made-up',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'counting__echo',
      },
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: {
          name: 'counting__echo',
          arguments: { text: 'd' },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': {},
            'io.modelcontextprotocol/clientInfo': { name: 'raw-2026', version: '1' },
          },
        },
      },
    });
    assert.equal(r.status, 200, r.text);
    // dan's first unit of 6, decided before the stateless endpoint took the request.
    assert.match(r.headers.get('ratelimit') ?? '', /"user";r=5;/);
  });
});
