/**
 * The QuotaStore contract on a real Redis Cluster of three masters that this test starts itself (free
 * ports, a temporary directory, all removed afterwards), and what Cluster adds: a decision whose
 * dimensions live in several slots (on several masters) is one script call per slot, sent together, and
 * a refusal in one slot gives back what the others charged.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { RedisQuotaStore } from '../../shared/adapters/redis/quota-store.js';
import type { RateDimension } from '../../shared/ports/quota-store.js';
import { stopChild } from '../helpers/net.js';
import { clientAs, startCountingBackend, startQuotaGateway } from '../helpers/quota-fixtures.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';
import { quotaStoreContract } from './quota-store.contract.js';

let cluster: RedisClusterHandle | undefined;
const started = async () => (cluster ??= await startRedisCluster(3));

async function clusterStore(): Promise<RedisQuotaStore> {
  const c = await started();
  const store = new RedisQuotaStore(c.urls, { keyPrefix: 'qc', commandTimeoutMs: 2000 });
  assert.ok(await store.ready(10_000), 'the cluster client connects');
  return store;
}

quotaStoreContract('redis cluster (3 masters)', clusterStore);

const rate = (key: string, slot: string, limit: number, burst = limit): RateDimension => ({
  key,
  slot,
  limit,
  windowMs: 3_600_000,
  burst,
});

describe('RedisQuotaStore on Redis Cluster, beyond the contract', { timeout: 120_000 }, () => {
  let store: RedisQuotaStore;
  let probe: Cluster;
  before(async () => {
    store = await clusterStore();
    probe = new Cluster(cluster!.nodes);
    probe.on('error', () => {});
  });
  after(async () => {
    await store?.close();
    probe?.disconnect();
    await cluster?.stop();
  });

  /** Which master (port) holds a key: CLUSTER KEYSLOT, then the slot ranges of CLUSTER SLOTS. */
  async function ownerOf(key: string): Promise<number> {
    const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', key));
    const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const hit = ranges.find(([lo, hi]) => slot >= lo && slot <= hi)!;
    return hit[2][1];
  }

  test('the dimensions of one decision sit on different masters: one script call per slot', async () => {
    // Find slots that land on three different masters, as user, app and global would.
    const byOwner = new Map<number, string>();
    for (let i = 0; byOwner.size < 3 && i < 200; i++) {
      const slot = `s${i}`;
      const owner = await ownerOf(store.keyOf(slot, 'r:x'));
      if (!byOwner.has(owner)) byOwner.set(owner, slot);
    }
    assert.equal(byOwner.size, 3, 'slots found on all three masters');
    const slots = [...byOwner.values()];
    // A master that has not run the script yet answers EVALSHA with NOSCRIPT, and ioredis sends EVAL
    // after it: one decision on these slots first loads it everywhere (the steady state is measured).
    const warm = randomUUID();
    await store.consume({
      rates: slots.map((s) => rate(`${s}:${warm}`, s, 10)),
      concurrency: [{ key: `c:${warm}`, slot: slots[0]!, limit: 2, leaseId: 'l0', leaseMs: 30_000 }],
    });
    const id = randomUUID();
    // One MONITOR per master: what each was sent by clients.
    const monitors = await Promise.all(
      cluster!.nodes.map(async (n) => {
        const base = new Redis(n);
        const m = await base.monitor();
        const seen: string[][] = [];
        m.on('monitor', (_t: string, args: string[], source: string) => {
          if (source !== 'lua' && args.some((a) => a.includes(id))) seen.push(args);
        });
        return { base, m, seen, port: n.port };
      }),
    );
    try {
      const d = await store.consume({
        rates: slots.map((s) => rate(`${s}:${id}`, s, 10)),
        concurrency: [{ key: `c:${id}`, slot: slots[0]!, limit: 2, leaseId: 'l1', leaseMs: 30_000 }],
      });
      assert.ok(d.allowed);
      assert.deepEqual(
        d.rates.map((r) => r.remaining),
        [9, 9, 9],
      );
      assert.deepEqual(d.concurrency, [{ allowed: true, inUse: 1 }]);
      const deadline = Date.now() + 5000;
      while (monitors.some((x) => x.seen.length < 1) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      for (const x of monitors) {
        assert.equal(x.seen.length, 1, `master ${x.port} got one call: ${JSON.stringify(x.seen)}`);
        assert.equal(x.seen[0]![0]!.toLowerCase(), 'evalsha');
      }
      const first = monitors.find((x) => x.port === [...byOwner.keys()][0])!;
      assert.equal(first.seen[0]![2], '2', "the user's slot carries its rate and its lease in one call");
    } finally {
      // Also on a failure: a monitor left open retries the stopped cluster for ever and the file never ends.
      for (const x of monitors) {
        x.m.disconnect();
        x.base.disconnect();
      }
    }
  });

  test('a refusal in one slot charges nothing in the others (rates refunded, leases removed)', async () => {
    const id = randomUUID();
    const wide = [rate(`a:${id}`, `a:${id}`, 100), rate(`g:${id}`, `g:${id}`, 100)];
    const narrow = rate(`u:${id}`, `u:${id}`, 3);
    const lease = (n: number) => ({
      key: `c:${id}`,
      slot: `c:${id}`,
      limit: 50,
      leaseId: `l${n}`,
      leaseMs: 30_000,
    });
    // 40 decisions at once: 3 admitted (the narrow limit), 37 refused by the narrow slot.
    const all = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        store.consume({ rates: [...wide, narrow], concurrency: [lease(i)] }),
      ),
    );
    assert.equal(all.filter((x) => x.allowed).length, 3);
    const refused = all.find((x) => !x.allowed)!;
    assert.equal(refused.rates[2]!.allowed, false);
    // The wide counters were charged by the 3 admitted only; the leases of the refused are gone.
    const after = await store.consume({ rates: wide, concurrency: [lease(99)] });
    assert.deepEqual(
      after.rates.map((r) => r.remaining),
      [96, 96],
      'three units spent on each wide counter, plus this one',
    );
    assert.deepEqual(after.concurrency, [{ allowed: true, inUse: 4 }]);
  });

  test('two stores (two gateways) on the cluster admit exactly the limit between them', async () => {
    const other = await clusterStore();
    const id = randomUUID();
    const dims = [rate(`u:${id}`, `u:${id}`, 1000), rate(`g:${id}`, `g:${id}`, 25)];
    const all = await Promise.all(
      Array.from({ length: 80 }, (_, i) => (i % 2 ? store : other).consume({ rates: dims })),
    );
    assert.equal(all.filter((x) => x.allowed).length, 25);
    // Refused decisions were refunded on the user slot; the one exception the design allows is a unit
    // charged while that counter was still idle, when the two stores' calls reached it in another order.
    const left = (await store.consume({ rates: [dims[0]!] })).rates[0]!.remaining;
    assert.ok(left <= 1000 - 25 - 1 && left >= 1000 - 25 - 2, `remaining ${left}`);
    await other.close();
  });

  test('a store handed a Cluster client uses it and leaves it open', async () => {
    const mine = new RedisQuotaStore(probe, { keyPrefix: 'qc-own' });
    const id = randomUUID();
    const d = await mine.consume({ rates: [rate(`x:${id}`, `x:${id}`, 1), rate(`y:${id}`, `y:${id}`, 1)] });
    assert.ok(d.allowed);
    assert.equal((await mine.consume({ rates: [rate(`x:${id}`, `x:${id}`, 1)] })).allowed, false);
    await mine.close();
    assert.equal(await probe.call('PING'), 'PONG');
  });

  test('a gateway configured with quotas.redisCluster: 429 from the cluster-held budget', async () => {
    const backend = await startCountingBackend();
    const gw = await startQuotaGateway({
      servers: [{ name: 'counting', transport: 'streamable-http', url: backend.url }],
      quotas: {
        enabled: true,
        store: 'redis',
        redisCluster: cluster!.urls.slice(0, 1),
        user: { limit: 4, windowMs: 3_600_000 },
        onStoreFailure: 'closed',
        // The first calls load the scripts on fresh nodes; the default 100 ms is tight on a loaded machine.
        redisTimeoutMs: 2000,
      },
    });
    try {
      const alice = await clientAs(`${gw.url}/mcp`, 'alice'); // initialize + initialized: 2 POSTs
      await alice.callTool({ name: 'counting__echo', arguments: { text: 'a' } });
      await alice.callTool({ name: 'counting__echo', arguments: { text: 'b' } });
      await assert.rejects(
        alice.callTool({ name: 'counting__echo', arguments: { text: 'c' } }),
        /GW_QUOTA_USER/,
      );
      assert.equal(gw.quotas!.stats().storeFailures, 0, 'decided by the cluster, not a fallback');
      await alice.close();
    } finally {
      await gw.close();
      await stopChild(backend.child);
    }
  });

  test('bad seed nodes are refused with a clear error', () => {
    assert.throws(() => new RedisQuotaStore([], {}), /at least one seed node/);
    assert.throws(() => new RedisQuotaStore(['http://127.0.0.1:1'], {}), /redis:\/\//);
  });
});
