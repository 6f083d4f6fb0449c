/**
 * Quotas exact across replicas: two gateway processes (`node dist/cli/main.js start`) share the real
 * Redis under a unique key prefix, and 50 concurrent clients spread over both. The admitted requests
 * equal the limit exactly, and the per-user concurrency limit is never exceeded at the backend (a fixture
 * that counts the calls in flight), in both `reject` and `queue` mode.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { backendStats, startCountingBackend } from '../helpers/quota-fixtures.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const INIT = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'load', version: '1' } },
};

describe('quotas across two gateway processes sharing Redis', { timeout: 240_000 }, () => {
  const run = `mcpgw-test-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-quotas-'));
  let backend: { url: string; base: string; child: ChildProcess };
  const children: ChildProcess[] = [];
  let redis: Redis;

  async function replicas(name: string, quotas: object): Promise<string[]> {
    return Promise.all(
      [0, 1].map(async (i) => {
        const port = await freePort();
        const file = join(dir, `${name}-${i}.json`);
        writeFileSync(
          file,
          JSON.stringify({
            role: 'single',
            listen: { host: '127.0.0.1', port },
            log: { level: 'info' },
            redis: { url: REDIS_URL, keyPrefix: `${run}-${name}` },
            // A busy test machine can stall Redis answers past the 100 ms default; a fallback decision
            // would (rightly) not be exact, and this test is about the exact path.
            quotas: { enabled: true, store: 'redis', expectedReplicas: 2, redisTimeoutMs: 5000, ...quotas },
            servers: [{ name: 'counting', transport: 'streamable-http', url: backend.url }],
          }),
        );
        const child = await spawnUntil(
          process.execPath,
          [MAIN, 'start', '--config', file],
          /mcpgw listening/,
        );
        children.push(child);
        return `http://127.0.0.1:${port}/mcp`;
      }),
    );
  }

  /** One client: initialize on its replica, then tools/call; every POST's status. */
  async function client(url: string, calls: number, args: object): Promise<number[]> {
    const statuses: number[] = [];
    const init = await raw(url, { headers: MCP_HEADERS, body: INIT });
    statuses.push(init.status);
    const sid = init.headers.get('mcp-session-id');
    // A client whose initialize was refused has no session to call in: it stops, as a real one would.
    if (!sid) return statuses;
    const headers: Record<string, string> = {
      ...MCP_HEADERS,
      'mcp-protocol-version': '2025-11-25',
      'mcp-session-id': sid,
    };
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

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping().catch((err: unknown) => {
      throw new Error(`these tests need a real Redis at ${REDIS_URL}: ${err}`);
    });
    backend = await startCountingBackend();
  });

  after(async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    await stopChild(backend.child);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${run}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
    await redis.quit();
    rmSync(dir, { recursive: true, force: true });
  });

  test('50 clients on two replicas: the admitted requests equal the limit exactly', async () => {
    const LIMIT = 137;
    // A day's window: no unit comes back while the test runs, so "exactly the limit" is exact.
    const urls = await replicas('exact', {
      user: { limit: LIMIT, windowMs: 86_400_000 },
      concurrency: { perUser: false },
    });
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => client(urls[i % 2]!, 9, { ms: 1 })));
    const statuses = all.flat();
    const refused = statuses.filter((s) => s === 429).length;
    const admitted = statuses.length - refused;
    assert.equal(admitted, LIMIT, `admitted ${admitted} of ${statuses.length}`);
    assert.ok(refused > 0 && statuses.length > LIMIT, `demand (${statuses.length}) exceeded the limit`);
    assert.ok(
      statuses.every((s) => s === 429 || s === 200),
      `every answer is 200 or 429: ${[...new Set(statuses)].join(',')}`,
    );
    // Both replicas admitted some: the count is shared, not per process.
    const perReplica = [0, 1].map(
      (r) =>
        all
          .filter((_, i) => i % 2 === r)
          .flat()
          .filter((s) => s !== 429).length,
    );
    assert.ok(
      perReplica.every((n) => n > 0),
      `admitted per replica: ${perReplica.join(', ')}`,
    );
  });

  test('concurrency per user, reject mode: never more than 20 in flight at the backend', async () => {
    await fetch(`${backend.base}/reset`, { method: 'POST' });
    const urls = await replicas('reject', { concurrency: { perUser: 20 } });
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => client(urls[i % 2]!, 4, { ms: 300 })));
    const stats = await backendStats(backend.base);
    assert.ok(stats.maxInFlight <= 20, `backend saw ${stats.maxInFlight} calls in flight at once`);
    assert.ok(stats.maxInFlight >= 10, `the limit was approached (${stats.maxInFlight})`);
    const statuses = all.flat();
    assert.ok(statuses.includes(429), 'some requests were over the limit');
    assert.ok(
      statuses.every((s) => s === 200 || s === 429),
      [...new Set(statuses)].join(','),
    );
  });

  test('concurrency per user, queue mode: every request served, never more than 20 in flight', async () => {
    await fetch(`${backend.base}/reset`, { method: 'POST' });
    const urls = await replicas('queue', {
      concurrency: { perUser: 20, mode: 'queue', queueTimeoutMs: 60_000 },
    });
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => client(urls[i % 2]!, 2, { ms: 150 })));
    const stats = await backendStats(backend.base);
    assert.deepEqual([...new Set(all.flat())], [200], 'queued, not refused');
    assert.equal(stats.calls, 100);
    assert.ok(stats.maxInFlight <= 20, `backend saw ${stats.maxInFlight} calls in flight at once`);
    assert.ok(stats.maxInFlight >= 10, `the limit was approached (${stats.maxInFlight})`);
  });
});
