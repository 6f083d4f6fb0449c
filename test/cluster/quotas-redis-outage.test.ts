/**
 * The quota store goes away and comes back: the test's own redis-server (on a free port) is killed in
 * the middle of the run and restarted. Three gateways share it, one per onStoreFailure mode: `open`
 * admits without counting, `closed` answers 503 GW_QUOTA_UNAVAILABLE, `local` counts in the process with
 * the limit divided by the expected replicas. When Redis is back every gateway decides with it again by
 * itself, and says so in its log and stats.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { freePort, spawnUntil, stopChild } from '../helpers/net.js';
import { startCountingBackend, startQuotaGateway } from '../helpers/quota-fixtures.js';

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

describe('quotas while Redis is down, and after', { timeout: 180_000 }, () => {
  let redisPort = 0;
  let redis: ChildProcess | undefined;
  let backend: { url: string; child: ChildProcess };
  const gws: Record<'open' | 'closed' | 'local', RunningNode> = {} as never;
  const logs: Record<string, string[]> = { open: [], closed: [], local: [] };

  const startRedis = async () =>
    (redis = await spawnUntil(
      'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      /Ready to accept connections/,
    ));
  const post = (mode: keyof typeof gws) =>
    raw(`${gws[mode].url}/mcp`, { headers: { ...MCP_HEADERS, connection: 'close' }, body: INIT });
  async function statuses(mode: keyof typeof gws, n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await post(mode)).status);
    return out;
  }

  before(async () => {
    redisPort = await freePort();
    await startRedis();
    backend = await startCountingBackend();
    for (const mode of ['open', 'closed', 'local'] as const) {
      const sink = new PassThrough();
      sink.on('data', (b: Buffer) => logs[mode]!.push(...b.toString().trim().split('\n')));
      gws[mode] = await startQuotaGateway(
        {
          log: { level: 'info' },
          redis: {
            url: `redis://127.0.0.1:${redisPort}`,
            keyPrefix: `outage-${randomBytes(4).toString('hex')}`,
          },
          servers: [{ name: 'counting', transport: 'streamable-http', url: backend.url }],
          quotas: {
            enabled: true,
            store: 'redis',
            expectedReplicas: 2,
            onStoreFailure: mode,
            user: { limit: 10, windowMs: 86_400_000 },
            concurrency: { perUser: false },
          },
        },
        sink,
      );
    }
  });

  after(async () => {
    await Promise.all(Object.values(gws).map((g) => g.close()));
    await stopChild(backend.child);
    await stopChild(redis);
  });

  test('open, closed and local fallback while Redis is down; recovery when it returns', async () => {
    // Redis up: decided by Redis (2 of the 10 spent on each gateway).
    for (const mode of ['open', 'closed', 'local'] as const)
      assert.deepEqual(await statuses(mode, 2), [200, 200]);

    redis!.kill('SIGKILL');
    await new Promise((r) => redis!.once('exit', r));

    // open: admitted without counting, beyond the limit.
    assert.deepEqual([...new Set(await statuses('open', 12))], [200]);
    // closed: refused, and says why.
    const closed = await post('closed');
    assert.equal(closed.status, 503);
    assert.equal(closed.json.error.data.code, 'GW_QUOTA_UNAVAILABLE');
    assert.equal(closed.json.error.data.dimension, 'user');
    assert.ok(closed.headers.get('retry-after'));
    // local: this process's share, 10 / 2 replicas = 5, then 429 with the divided limit shown.
    assert.deepEqual(await statuses('local', 5), [200, 200, 200, 200, 200]);
    const over = await post('local');
    assert.equal(over.status, 429);
    assert.equal(over.json.error.data.code, 'GW_QUOTA_USER');
    assert.equal(over.json.error.data.limit, 5);
    assert.match(over.headers.get('ratelimit-policy')!, /"user";q=5;/);
    for (const mode of ['open', 'closed', 'local'] as const) {
      const s = gws[mode].quotas!.stats();
      assert.equal(s.storeAvailable, false, mode);
      assert.ok(s.fallbackDecisions[mode] > 0, `${mode}: ${JSON.stringify(s.fallbackDecisions)}`);
      assert.ok(
        logs[mode]!.some((l) => l.includes('quota store unavailable')),
        `${mode} logged the outage`,
      );
    }

    // Redis back (empty: it keeps nothing on disk). The client reconnects by itself.
    await startRedis();
    const deadline = Date.now() + 15_000;
    let back = await post('closed');
    while (back.status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      back = await post('closed');
    }
    assert.equal(back.status, 200, 'closed admits again once Redis is back');
    // local: decided by Redis again, with the whole limit (Redis restarted empty).
    while (!gws.local.quotas!.stats().storeAvailable && Date.now() < deadline) {
      await post('local');
      await new Promise((r) => setTimeout(r, 100));
    }
    const fresh = await post('local');
    assert.match(fresh.headers.get('ratelimit-policy') ?? '', /"user";q=10;/);
    // open: counted again, so the limit holds again. The first decision that reaches Redis again is
    // counted there (1 of the 10), so 9 more are admitted.
    while (!gws.open.quotas!.stats().storeAvailable && Date.now() < deadline) {
      await post('open');
      await new Promise((r) => setTimeout(r, 100));
    }
    const open = await statuses('open', 12);
    assert.equal(open.filter((s) => s === 200).length, 9, `open after recovery: ${open.join(',')}`);
    for (const mode of ['open', 'closed', 'local'] as const) {
      assert.equal(gws[mode].quotas!.stats().storeAvailable, true, mode);
      assert.ok(
        logs[mode]!.some((l) => l.includes('quota store back')),
        `${mode} logged the recovery`,
      );
    }
  });
});
