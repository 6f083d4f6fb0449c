/**
 * Two core instances of one region sharing breaker state through Redis: what one learns about a replica
 * (dead, ejected) protects the other before it sends that replica a single call, and a later instance
 * reads the verdicts in force when it starts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { RunningNode } from '../../cli/single.js';
import { raw, startGateway } from '../helpers/gateway.js';
import { FixtureReplica, RawCaller, until } from '../helpers/pool-replicas.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'mcpgw-pools-cluster-'));

describe('breaker verdicts shared through Redis', { timeout: 60_000 }, () => {
  let reps: FixtureReplica[];
  let a: RunningNode;
  let b: RunningNode;
  let late: RunningNode | undefined;
  const node = (intervalMs: number) =>
    startGateway({
      redis: { url: REDIS_URL, keyPrefix },
      pools: { sharedState: 'redis' },
      servers: [
        {
          name: 'svc',
          transport: 'streamable-http',
          replicas: reps.map((r) => r.url),
          health: { intervalMs, timeoutMs: 2000, unhealthyThreshold: 2, healthyThreshold: 2 },
          breaker: { resetTimeoutMs: 20_000, volumeThreshold: 2 },
        },
      ],
    });
  const replicaOf = async (gw: RunningNode, id: string) =>
    (await raw(`${gw.url}/readyz`, { method: 'GET' })).json.servers.svc.pool.replicas.find(
      (r: any) => r.id === id,
    );

  before(async () => {
    reps = await Promise.all(['a', 'b', 'c'].map((n) => FixtureReplica.start(n, join(dir, `${n}.log`))));
    a = await node(100); // checks actively
    b = await node(0); // never checks: it can only learn from A
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close(), late?.close()]);
    await Promise.all(reps.map((r) => r.stop()));
    const c = new Redis(REDIS_URL);
    const keys = await c.keys(`${keyPrefix}*`);
    if (keys.length > 0) await c.del(...keys);
    c.disconnect();
  });

  test('a replica one instance ejects is avoided by the other, which never called it', async () => {
    const victim = reps[0]!;
    await victim.kill();
    await until('A ejects the dead replica', async () =>
      (await replicaOf(a, victim.url)).healthy ? undefined : true,
    );
    const seenByB = await until('B learns it', async () => {
      const r = await replicaOf(b, victim.url);
      return r.healthy ? undefined : r;
    });
    assert.equal(seenByB.calls, 0, 'B learned without sending it anything');
    // B's sessions now open only on live replicas: no call fails, none needs a retry.
    const sessions = await Promise.all(Array.from({ length: 9 }, () => RawCaller.open(`${b.url}/mcp`)));
    for (const s of sessions) {
      const r = await s.call('svc__charge', { x: 1 });
      assert.ok(r.result && !r.result.isError, JSON.stringify(r));
      assert.notEqual(r.result.structuredContent.replica, victim.name);
    }
    const pool = (await raw(`${b.url}/readyz`, { method: 'GET' })).json.servers.svc.pool;
    assert.equal(pool.retries, 0);
    assert.equal(pool.replicas.find((r: any) => r.id === victim.url).calls, 0);

    // An instance that starts now reads the verdict in force.
    late = await node(0);
    assert.equal((await replicaOf(late, victim.url)).healthy, false, 'a new instance starts knowing');
  });
});
