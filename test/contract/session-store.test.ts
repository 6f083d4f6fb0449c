/**
 * The SessionStore contract on every adapter: memory, and Redis on the machine's real server
 * (`redis://127.0.0.1:6379`, or MCPGW_TEST_REDIS_URL). No Redis means failed tests, never skipped ones.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { MemorySessionStore } from '../../shared/adapters/memory/session-store.js';
import { RedisSessionStore } from '../../shared/adapters/redis/session-store.js';
import { sessionStoreContract } from './session-store.contract.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
// One prefix per run, so parallel runs and leftovers of a crashed run never meet.
const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
let connecting: Promise<Redis> | undefined;

sessionStoreContract('memory', () => new MemorySessionStore());

sessionStoreContract('redis', async () => new RedisSessionStore(await testRedis(), { keyPrefix }), {
  teardown: () => releaseTestRedis(keyPrefix),
});

// After every suite of this file: the file's one connection.
after(async () => {
  const c = await connecting?.catch(() => undefined);
  if (c?.status === 'ready') await c.quit();
});

describe('RedisSessionStore beyond the contract', () => {
  const prefix = `${keyPrefix}-own`;
  after(() => releaseTestRedis(prefix));

  test('keeps one key per session, under its hash tag, with a ttl', async () => {
    const probe = await testRedis();
    const store = new RedisSessionStore(probe, { keyPrefix: prefix });
    const id = randomUUID();
    await store.put(sampleRecord(id), 60_000);
    const key = `${prefix}:{sess:${id}}:session`;
    assert.deepEqual(await keysUnder(prefix, probe), [key]);
    const ttl = await probe.pttl(key);
    assert.ok(ttl > 50_000 && ttl <= 60_000, `pttl ${ttl}`);
    await store.close();
    assert.equal(await probe.ping(), 'PONG', 'close leaves a client it was given open');
  });

  test('a store built from a URL owns its client and quits it on close', async () => {
    await testRedis(); // fails with the clear message when there is no Redis
    const store = new RedisSessionStore(REDIS_URL, { keyPrefix: prefix });
    const id = randomUUID();
    await store.put(sampleRecord(id), 60_000);
    assert.equal((await store.get(id))?.id, id);
    await store.close();
    await assert.rejects(store.get(id), /Connection is closed/);
  });

  // Options are checked before any connection is made, so a refused store leaks no client.
  test('refuses a key prefix that would break the hash tag', () => {
    assert.throws(() => new RedisSessionStore(REDIS_URL, { keyPrefix: 'a{b}' }), RangeError);
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

function sampleRecord(id: string) {
  return {
    id,
    principal: 'user:alice',
    scope: 'aggregate',
    protocolVersion: '2025-06-18',
    clientInfo: {},
    clientCapabilities: {},
    backendSessions: {},
    createdAt: Date.now(),
    lastSeenAt: Date.now(),
  };
}
