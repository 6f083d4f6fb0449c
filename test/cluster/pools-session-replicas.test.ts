/**
 * A client session's backend session and the backend replica it lives on, across gateway processes that
 * share Redis: another gateway continues it on the same backend replica (recorded in the SessionStore),
 * and when that replica dies the session moves to a healthy one and the record says so.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { RunningNode } from '../../cli/single.js';
import { RedisSessionStore } from '../../shared/adapters/redis/session-store.js';
import { startGateway } from '../helpers/gateway.js';
import { FixtureReplica, RawCaller } from '../helpers/pool-replicas.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'mcpgw-pools-sessions-'));

describe('backend replicas recorded with backend sessions', { timeout: 60_000 }, () => {
  let reps: FixtureReplica[];
  let a: RunningNode;
  let b: RunningNode;
  let store: RedisSessionStore;
  const node = () =>
    startGateway({
      sessions: { store: 'redis' },
      redis: { url: REDIS_URL, keyPrefix },
      servers: [
        {
          name: 'svc',
          transport: 'streamable-http',
          replicas: reps.map((r) => r.url),
          health: { intervalMs: 100, timeoutMs: 2000, unhealthyThreshold: 2 },
          retry: { initialBackoffMs: 5, maxBackoffMs: 20 },
        },
      ],
    });

  before(async () => {
    reps = await Promise.all(['a', 'b', 'c'].map((n) => FixtureReplica.start(n, join(dir, `${n}.log`))));
    a = await node();
    b = await node();
    store = new RedisSessionStore(REDIS_URL, { keyPrefix });
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await store?.close();
    await Promise.all(reps.map((r) => r.stop()));
    const c = new Redis(REDIS_URL);
    const keys = await c.keys(`${keyPrefix}*`);
    if (keys.length > 0) await c.del(...keys);
    c.disconnect();
  });

  test('another gateway continues on the same replica; a dead replica moves the session and the record', async () => {
    const onA = await RawCaller.open(`${a.url}/mcp`);
    const first = await onA.call('svc__read', { n: 1 });
    const holder = reps.find((r) => r.name === first.result.structuredContent.replica)!;
    const record = (await store.get(onA.sid))!;
    assert.equal(record.backendSessions.svc?.replica, holder.url, 'the record names the replica');

    // The same client session, continued by gateway B: same backend replica, same backend session.
    const onB = Object.assign(Object.create(Object.getPrototypeOf(onA)), onA, {
      url: `${b.url}/mcp`,
    }) as RawCaller;
    const second = await onB.call('svc__read', { n: 2 });
    assert.equal(second.result.structuredContent.replica, holder.name);
    const sessionsSeen = new Set(holder.calls('read').map((c) => c.session));
    assert.equal(sessionsSeen.size, 1, 'B adopted the backend session A opened');

    // The replica dies: B's next call moves the session to a live replica (re-initialized there).
    await holder.kill();
    const third = await onB.call('svc__read', { n: 3 });
    assert.ok(third.result, JSON.stringify(third));
    assert.notEqual(third.result.structuredContent.replica, holder.name);
    const moved = (await store.get(onA.sid))!;
    assert.notEqual(moved.backendSessions.svc?.replica, holder.url, 'the record follows the move');
    assert.equal(
      moved.backendSessions.svc?.replica,
      reps.find((r) => r.name === third.result.structuredContent.replica)!.url,
    );
  });
});
