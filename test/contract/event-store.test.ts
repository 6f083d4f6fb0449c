/**
 * The EventStore contract on every adapter: memory, and Redis on the machine's real server
 * (`redis://127.0.0.1:6379`, or MCPGW_TEST_REDIS_URL). No Redis means failed tests, never skipped ones.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { MemoryEventStore } from '../../shared/adapters/memory/event-store.js';
import { RedisEventStore } from '../../shared/adapters/redis/event-store.js';
import { eventStoreContract } from './event-store.contract.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
// One prefix per run, so parallel runs and leftovers of a crashed run never meet.
const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
let connecting: Promise<Redis> | undefined;

eventStoreContract('memory', (retention) => new MemoryEventStore(retention));

eventStoreContract(
  'redis',
  async (retention) => new RedisEventStore(await testRedis(), { keyPrefix, ...retention }),
  { teardown: () => releaseTestRedis(keyPrefix) },
);

// After every suite of this file: the file's one connection.
after(async () => {
  const c = await connecting?.catch(() => undefined);
  if (c?.status === 'ready') await c.quit();
});

describe('RedisEventStore beyond the contract', () => {
  const prefix = `${keyPrefix}-own`;
  after(() => releaseTestRedis(prefix));

  test("a session's keys share one hash tag, are trimmed exactly and expire with the session", async () => {
    const probe = await testRedis();
    const store = new RedisEventStore(probe, {
      keyPrefix: prefix,
      maxEventsPerStream: 3,
      maxAgeMs: 30_000,
      sessionTtlMs: 60_000,
    });
    const session = randomUUID();
    for (let i = 0; i < 5; i++) {
      await store.append(session, 'a', { i });
      await store.append(session, 'b:{x}', { i });
    }
    const tag = `{sess:${session}}`;
    const keys = await keysUnder(prefix, probe);
    assert.deepEqual(keys, [
      `${prefix}:${tag}:stream:a`,
      `${prefix}:${tag}:stream:b%3A%7Bx%7D`,
      `${prefix}:${tag}:streams`,
    ]);
    for (const key of keys) {
      assert.equal(/\{([^}]*)\}/.exec(key)?.[1], tag.slice(1, -1), `hash tag of ${key}`);
      const ttl = await probe.pttl(key);
      assert.ok(ttl > 50_000 && ttl <= 60_000, `pttl of ${key}: ${ttl}`);
    }
    assert.equal(await probe.xlen(`${prefix}:${tag}:stream:a`), 3);

    await store.deleteSession(session);
    assert.deepEqual(await keysUnder(prefix, probe), [], 'deleteSession leaves no key behind');
    await store.close();
    assert.equal(await probe.ping(), 'PONG', 'close leaves a client it was given open');
  });

  test('stream keys live at least maxAgeMs, even with a shorter session ttl', async () => {
    const probe = await testRedis();
    const store = new RedisEventStore(probe, { keyPrefix: prefix, maxAgeMs: 120_000, sessionTtlMs: 1000 });
    const session = randomUUID();
    await store.append(session, 's', {});
    const ttl = await probe.pttl(`${prefix}:{sess:${session}}:stream:s`);
    assert.ok(ttl > 110_000, `pttl ${ttl}`);
    await store.deleteSession(session);
  });

  test('the index forgets streams whose keys have expired', async () => {
    const probe = await testRedis();
    const store = new RedisEventStore(probe, { keyPrefix: prefix, maxAgeMs: 100, sessionTtlMs: 100 });
    const session = randomUUID();
    await store.append(session, 'old', {});
    await new Promise((r) => setTimeout(r, 250));
    await store.append(session, 'new', {});
    assert.deepEqual(await probe.zrange(`${prefix}:{sess:${session}}:streams`, 0, -1), ['new']);
    await store.deleteSession(session);
  });

  test('a store built from a URL owns its client and quits it on close', async () => {
    await testRedis(); // fails with the clear message when there is no Redis
    const store = new RedisEventStore(REDIS_URL, { keyPrefix: prefix });
    const session = randomUUID();
    const id = await store.append(session, 's', {});
    assert.deepEqual(await store.replayAfter(session, id), { streamId: 's', events: [] });
    await store.deleteSession(session);
    await store.close();
    await assert.rejects(store.append(session, 's', {}), /Connection is closed/);
  });

  // Options are checked before any connection is made, so a refused store leaks no client.
  test('refuses options it cannot honour', () => {
    assert.throws(() => new RedisEventStore(REDIS_URL, { keyPrefix: '{x}' }), RangeError);
    assert.throws(() => new RedisEventStore(REDIS_URL, { maxEventsPerStream: 0 }), RangeError);
    assert.throws(() => new RedisEventStore(REDIS_URL, { maxAgeMs: -1 }), RangeError);
  });
});

/**
 * One connection per file, opened by the first test that needs it. A missing Redis fails each of those tests
 * with this message (a before hook would only cancel them).
 */
function testRedis(): Promise<Redis> {
  connecting ??= (async () => {
    let socketError: unknown;
    const c = new Redis(REDIS_URL, { lazyConnect: true, retryStrategy: () => null, connectTimeout: 3000 });
    // ioredis reports the socket's own error (ECONNREFUSED...) as an event and rejects with a vaguer one.
    c.on('error', (err) => (socketError = err));
    try {
      await c.connect();
      await c.ping();
      return c;
    } catch (err) {
      c.disconnect();
      throw new Error(
        `these tests need a real Redis at ${REDIS_URL} (set MCPGW_TEST_REDIS_URL for another): ${String(socketError ?? err)}`,
        { cause: err },
      );
    }
  })();
  return connecting;
}

/** Deletes every key under `prefix` (SCAN, then DEL). */
async function releaseTestRedis(prefix: string): Promise<void> {
  const c = await connecting?.catch(() => undefined);
  if (!c || c.status !== 'ready') return;
  const keys = await keysUnder(prefix, c);
  if (keys.length > 0) await c.del(...keys);
}

async function keysUnder(prefix: string, c: Redis): Promise<string[]> {
  const keys: string[] = [];
  for await (const batch of c.scanStream({ match: `${prefix}:*`, count: 500 }))
    keys.push(...(batch as string[]));
  return keys.sort();
}
