/**
 * The region lease, fenced by KV revision, on the in-process bus and on NATS (the machine's server,
 * a run-unique bucket deleted afterwards): one holder at a time, a stale holder's write fails and it
 * learns it lost, a released lease is taken at once, an expired one after its ttl on the contender's clock.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { InProcessBus } from '../../shared/adapters/memory/federation-bus.js';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import type { FederationBus, KvBucket } from '../../shared/ports/federation-bus.js';
import { decodeEnvelope } from '../../federation/codec.js';
import { RegionLease } from '../../federation/region-lease.js';
import { RUN_ID, uniqueBucket } from '../contract/federation-bus.contract.js';
import { silent } from '../helpers/federation.js';

const NATS_URL = process.env.MCPGW_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const TTL = 1_000;

/** A clock the test moves by hand: expiry is decided without waiting. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function leaseSuite(name: string, open: () => Promise<{ bus: FederationBus; drop(): Promise<void> }>) {
  describe(`region lease: ${name}`, () => {
    let bus: FederationBus | undefined;
    let drop: (() => Promise<void>) | undefined;
    after(async () => {
      await drop?.();
      await bus?.close();
    });
    const bucket = async (): Promise<KvBucket> => {
      if (!bus) ({ bus, drop } = await open());
      return bus.bucket(uniqueBucket('lease'));
    };
    const lease = (b: KvBucket, gatewayId: string, now: () => number) =>
      new RegionLease({ bucket: b, region: 'a', gatewayId, ttlMs: TTL, log: silent, now });

    test('one holder at a time; the holder renews, the other waits', async () => {
      const b = await bucket();
      const c = clock();
      const g1 = lease(b, 'g1', c.now);
      const g2 = lease(b, 'g2', c.now);
      assert.equal(await g1.attempt(), true);
      assert.equal(await g2.attempt(), false);
      const token = g1.fencingToken!;
      c.advance(TTL / 2);
      assert.equal(await g1.attempt(), true, 'renewed');
      assert.ok(g1.fencingToken! > token, 'every renewal is a new fencing token');
      c.advance(TTL / 2);
      assert.equal(await g2.attempt(), false, 'the renewals keep it held');
      assert.deepEqual([g1.held, g2.held], [true, false]);
    });

    test('a stale holder is fenced: its renewal fails on the revision and it learns it lost', async () => {
      const b = await bucket();
      const c1 = clock(); // g1's clock stops: a process paused (GC, VM freeze) with a lease it believes in
      const c2 = clock();
      const g1 = lease(b, 'g1', c1.now);
      const g2 = lease(b, 'g2', c2.now);
      const changes: Array<[string, boolean]> = [];
      g1.onChange((held) => changes.push(['g1', held]));
      g2.onChange((held) => changes.push(['g2', held]));
      assert.equal(await g1.attempt(), true);
      assert.equal(await g2.attempt(), false);
      c2.advance(TTL);
      assert.equal(await g2.attempt(), true, 'g2 takes over a lease silent for a ttl');
      assert.equal(g1.held, true, 'g1 has not noticed yet');
      assert.equal(await g1.attempt(), false, "g1's write names the old revision and fails");
      assert.deepEqual([g1.held, g2.held], [false, true]);
      assert.deepEqual(changes, [
        ['g1', true],
        ['g2', true],
        ['g1', false],
      ]);
      const stored = decodeEnvelope((await b.get('lease.leader'))!.value, 'lease');
      assert.equal(stored.body.holder, 'g2', 'the stale write changed nothing');
    });

    test('a holder cut off longer than its ttl stops believing it holds the lease', async () => {
      const b = await bucket();
      const c = clock();
      const g1 = lease(b, 'g1', c.now);
      assert.equal(await g1.attempt(), true);
      c.advance(TTL);
      assert.equal(g1.held, false);
      assert.equal(g1.fencingToken, undefined);
    });

    test('a released lease is taken at once by the next contender', async () => {
      const b = await bucket();
      const c = clock();
      const g1 = lease(b, 'g1', c.now);
      const g2 = lease(b, 'g2', c.now);
      assert.equal(await g1.attempt(), true);
      assert.equal(await g2.attempt(), false);
      await g1.stop();
      assert.equal(g1.held, false);
      assert.equal(await g2.attempt(), true);
    });

    test('two contenders racing for a free lease: exactly one wins', async () => {
      const b = await bucket();
      const c = clock();
      const all = ['g1', 'g2', 'g3', 'g4'].map((g) => lease(b, g, c.now));
      const won = await Promise.all(all.map((l) => l.attempt()));
      assert.equal(won.filter(Boolean).length, 1, `winners: ${won}`);
    });
  });
}

leaseSuite('in-process', async () => ({ bus: new InProcessBus(), drop: async () => {} }));
leaseSuite(`nats ${NATS_URL}`, async () => {
  const bus = await NatsBus.connect({ servers: NATS_URL });
  return {
    bus,
    drop: async () => {
      for await (const name of bus.jsm.streams.names())
        if (name.includes(`_${RUN_ID}_`)) await bus.destroyStream(name);
    },
  };
});
