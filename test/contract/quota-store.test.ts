/**
 * The QuotaStore contract on every adapter: memory, and Redis on the machine's real server
 * (`redis://127.0.0.1:6379`, or MCPGW_TEST_REDIS_URL). No Redis means failed tests, never skipped ones.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { MemoryQuotaStore } from '../../shared/adapters/memory/quota-store.js';
import { RedisQuotaStore } from '../../shared/adapters/redis/quota-store.js';
import { quotaStoreContract } from './quota-store.contract.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;

async function dropKeys(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await r.del(...keys);
  } while (cursor !== '0');
  await r.quit();
}

quotaStoreContract('memory', () => new MemoryQuotaStore());
quotaStoreContract(
  'redis',
  async () => {
    const store = new RedisQuotaStore(REDIS_URL, { keyPrefix });
    assert.ok(await store.ready(), `these tests need a real Redis at ${REDIS_URL}`);
    return store;
  },
  {
    teardown: () => dropKeys(keyPrefix),
  },
);

describe('RedisQuotaStore beyond the contract', () => {
  const prefix = `${keyPrefix}-own`;
  after(() => dropKeys(prefix));

  test('keys carry the slot as hash tag and expire once their state stops mattering', async () => {
    const probe = new Redis(REDIS_URL);
    const store = new RedisQuotaStore(probe, { keyPrefix: prefix });
    const user = `u-${randomUUID()}`;
    await store.consume({
      rates: [{ key: `user:${user}`, slot: `u:${user}`, limit: 10, windowMs: 60_000, burst: 10 }],
      concurrency: [{ key: `conc:${user}`, slot: `u:${user}`, limit: 2, leaseId: 'l1', leaseMs: 30_000 }],
    });
    const keys = (await probe.keys(`${prefix}:*`)).sort();
    assert.deepEqual(keys, [
      `${prefix}:{q:u%3A${user}}:c%3Aconc%3A${user}`,
      `${prefix}:{q:u%3A${user}}:r%3Auser%3A${user}`,
    ]);
    for (const k of keys) {
      const ttl = await probe.pttl(k);
      assert.ok(ttl > 0 && ttl <= 30_000, `${k} pttl ${ttl}`);
    }
    await store.close();
    assert.equal(await probe.ping(), 'PONG', 'close leaves a client it was given open');
    await probe.quit();
  });

  test('one round trip per decision for every dimension; a release is one ZREM', async () => {
    // MONITOR shows what clients send ([addr]) apart from what a script runs inside Redis ("lua").
    const watcher = new Redis(REDIS_URL);
    const monitor = await watcher.monitor();
    const p = `${prefix}-rt-${randomUUID()}`;
    const sent: { args: string[]; source: string }[] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (args.some((a) => a.startsWith(`${p}:`))) sent.push({ args, source });
    });
    const store = new RedisQuotaStore(REDIS_URL, { keyPrefix: p });
    assert.ok(await store.ready());
    const n = 20;
    for (let i = 0; i < n; i++) {
      const user = `u${i}`;
      const d = await store.consume({
        rates: [
          { key: `user:${user}`, slot: `u:${user}`, limit: 100, windowMs: 60_000, burst: 100 },
          { key: 'app:x', slot: 'a:x', limit: 1000, windowMs: 60_000, burst: 1000 },
          { key: 'global', slot: 'g', limit: 10_000, windowMs: 60_000, burst: 10_000 },
        ],
        concurrency: [
          { key: `conc:${user}`, slot: `u:${user}`, limit: 5, leaseId: `l${i}`, leaseMs: 30_000 },
        ],
      });
      assert.ok(d.allowed);
      await store.release([{ key: `conc:${user}`, slot: `u:${user}`, leaseId: `l${i}`, leaseMs: 30_000 }]);
    }
    // MONITOR lines arrive after the commands ran; wait for the last release to show.
    const deadline = Date.now() + 5000;
    while (sent.filter((c) => c.source !== 'lua').length < 2 * n && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const fromClient = sent.filter((c) => c.source !== 'lua');
    const evals = fromClient.filter((c) => c.args[0]!.toLowerCase() === 'evalsha');
    const zrems = fromClient.filter((c) => c.args[0]!.toLowerCase() === 'zrem');
    assert.equal(evals.length, n, 'exactly one script call per decision');
    assert.equal(zrems.length, n, 'exactly one ZREM per release');
    assert.equal(
      fromClient.length,
      2 * n,
      `nothing else sent: ${fromClient.map((c) => c.args[0]).join(',')}`,
    );
    for (const e of evals) assert.equal(e.args[2], '4', 'the one call names all four keys');
    assert.ok(
      sent.some((c) => c.source === 'lua' && c.args[0]!.toLowerCase() === 'mget'),
      'the counters are read inside the script',
    );
    monitor.disconnect();
    watcher.disconnect();
    await store.close();
  });

  test('decisions issued together leave in one write; one issued alone is sent in its own tick', async () => {
    const client = new Redis(REDIS_URL);
    const store = new RedisQuotaStore(client, { keyPrefix: `${prefix}-w-${randomUUID()}` });
    assert.ok(await store.ready());
    await client.ping();
    // What reaches the socket: each _write/_writev call is one system call's worth of commands.
    const socket = client.stream as unknown as {
      _write: (...a: unknown[]) => void;
      _writev?: (...a: unknown[]) => void;
    };
    let writes = 0;
    const w = socket._write.bind(socket);
    socket._write = (...a) => (writes++, w(...a));
    const wv = socket._writev?.bind(socket);
    if (wv) socket._writev = (...a) => (writes++, wv(...a));
    const decide = (i: number) =>
      store.consume({
        rates: [
          { key: `user:${i}`, slot: `u:${i}`, limit: 10, windowMs: 60_000, burst: 10 },
          { key: 'global', slot: 'g', limit: 1000, windowMs: 60_000, burst: 1000 },
        ],
        concurrency: [{ key: `conc:${i}`, slot: `u:${i}`, limit: 2, leaseId: `l${i}`, leaseMs: 30_000 }],
      });
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => decide(i)));
    assert.ok(all.every((d) => d.allowed));
    assert.equal(writes, 1, 'fifty decisions of one tick, one write');
    writes = 0;
    const started = performance.now();
    const one = await decide(99);
    assert.ok(one.allowed);
    assert.equal(writes, 1);
    assert.ok(performance.now() - started < 250, 'a lone decision is not held back');
    await store.close();
    await client.quit();
  });

  test('a Redis that is down fails the decision at once, not after a queue', async () => {
    const store = new RedisQuotaStore('redis://127.0.0.1:1', { keyPrefix: prefix });
    const started = Date.now();
    await assert.rejects(
      store.consume({ rates: [{ key: 'k', slot: 'k', limit: 1, windowMs: 1000, burst: 1 }] }),
    );
    assert.ok(Date.now() - started < 500, `took ${Date.now() - started} ms`);
    await store.close();
  });

  test('refuses a prefix that would break the hash tag (Cluster: quota-store-cluster.test.ts)', () => {
    assert.throws(() => new RedisQuotaStore(REDIS_URL, { keyPrefix: 'a{b}' }), RangeError);
  });
});
