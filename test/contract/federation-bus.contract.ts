/**
 * The FederationBus contract as a user of the port sees it. The in-process adapter and the NATS adapter
 * both run it (federation-bus*.test.ts), so the memory bus stays a faithful stand-in for NATS.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import {
  KvRevisionConflict,
  type BusMessage,
  type FederationBus,
  type KvEntry,
} from '../../shared/ports/federation-bus.js';

export interface ContractOptions {
  /** Runs after the suite, once every bus has been closed (e.g. deletes the run's buckets). */
  teardown?: () => Promise<void>;
}

/** Names every bucket this test process makes, so that its teardown finds them all (and nobody else's). */
export const RUN_ID = randomBytes(4).toString('hex');

/** A fresh, run-unique bucket name (buckets outlive buses on NATS). */
export const uniqueBucket = (tag: string): string => `t_${RUN_ID}_${tag}_${randomBytes(3).toString('hex')}`;

/** Collects a watch's deliveries, and lets a test await the n-th. */
function recorder() {
  const seen: Array<[string, unknown]> = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  return {
    seen,
    listener: (key: string, e: KvEntry | undefined) => {
      seen.push([key, e?.value]);
      for (const w of [...waiters])
        if (seen.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
    },
    until: (n: number) =>
      seen.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })),
  };
}

function nextMessage(bus: FederationBus, pattern: string): { message: Promise<BusMessage>; stop(): void } {
  let stop = () => {};
  const message = new Promise<BusMessage>((resolve) => (stop = bus.subscribe(pattern, resolve)));
  return { message, stop: () => stop() };
}

export function federationBusContract(
  name: string,
  open: (defaultBucket: string) => Promise<FederationBus>,
  opts: ContractOptions = {},
): void {
  describe(`FederationBus contract: ${name}`, () => {
    const buses: FederationBus[] = [];
    const fresh = async (tag: string): Promise<FederationBus> => {
      const bus = await open(uniqueBucket(tag));
      buses.push(bus);
      return bus;
    };
    after(async () => {
      await Promise.all(buses.map((b) => b.close()));
      await opts.teardown?.();
    });

    test('a published message reaches exact, `*` and `>` subscribers, and nobody else', async () => {
      const bus = await fresh('pub');
      const tag = randomBytes(4).toString('hex');
      const exact = nextMessage(bus, `t.${tag}.reg.changed`);
      const star = nextMessage(bus, `t.${tag}.*.changed`);
      const rest = nextMessage(bus, `t.${tag}.>`);
      let wrong = 0;
      const stopWrong = bus.subscribe(`t.${tag}.other.*`, () => wrong++);
      // A flush point: a subscription made after the others sees the message only after them.
      const last = nextMessage(bus, `t.${tag}.reg.changed`);
      await bus.publish(`t.${tag}.reg.changed`, { n: 1, nested: { ok: true } });
      for (const s of [exact, star, rest, last]) {
        const m = await s.message;
        assert.deepEqual(m, { subject: `t.${tag}.reg.changed`, data: { n: 1, nested: { ok: true } } });
        s.stop();
      }
      stopWrong();
      assert.equal(wrong, 0);
    });

    test('an unsubscribed listener hears nothing more', async () => {
      const bus = await fresh('unsub');
      const subject = `t.${randomBytes(4).toString('hex')}.x`;
      let heard = 0;
      const stop = bus.subscribe(subject, () => heard++);
      stop();
      const probe = nextMessage(bus, subject);
      await bus.publish(subject, 1);
      await probe.message;
      probe.stop();
      assert.equal(heard, 0);
    });

    test('kvPut then kvGet returns the value with a revision that grows with every write', async () => {
      const bus = await fresh('put');
      assert.equal(await bus.kvGet('never.written'), undefined);
      const r1 = await bus.kvPut('srv.g1.weather', { tools: ['forecast'], n: 1 });
      const r2 = await bus.kvPut('srv.g1.weather', { tools: ['forecast', 'alerts'], n: 2 });
      const r3 = await bus.kvPut('srv.g1.maps', { n: 3 });
      assert.ok(r1 < r2 && r2 < r3, `revisions ${r1} ${r2} ${r3}`);
      assert.deepEqual(await bus.kvGet('srv.g1.weather'), {
        key: 'srv.g1.weather',
        value: { tools: ['forecast', 'alerts'], n: 2 },
        revision: r2,
      });
    });

    test('kvDelete removes the key; deleting a missing key is no error', async () => {
      const bus = await fresh('del');
      await bus.kvPut('gw.g1', { up: true });
      await bus.kvDelete('gw.g1');
      assert.equal(await bus.kvGet('gw.g1'), undefined);
      await bus.kvDelete('gw.never');
    });

    test('kvCreate writes only a key without a value: existing fails, deleted succeeds', async () => {
      const bus = await fresh('create');
      const r1 = await bus.kvCreate('lease.leader', { holder: 'g1' });
      await assert.rejects(bus.kvCreate('lease.leader', { holder: 'g2' }), (err: unknown) => {
        assert.ok(err instanceof KvRevisionConflict);
        assert.equal(err.key, 'lease.leader');
        return true;
      });
      assert.deepEqual((await bus.kvGet('lease.leader'))?.value, { holder: 'g1' });
      assert.equal((await bus.kvGet('lease.leader'))?.revision, r1);
      await bus.kvDelete('lease.leader');
      const r2 = await bus.kvCreate('lease.leader', { holder: 'g2' });
      assert.ok(r2 > r1);
      assert.deepEqual((await bus.kvGet('lease.leader'))?.value, { holder: 'g2' });
    });

    test('kvUpdate is fenced by revision: a writer holding a stale revision fails and changes nothing', async () => {
      const bus = await fresh('update');
      const r1 = await bus.kvPut('lease.leader', { holder: 'g1' });
      const r2 = await bus.kvUpdate('lease.leader', { holder: 'g2' }, r1);
      assert.ok(r2 > r1);
      await assert.rejects(bus.kvUpdate('lease.leader', { holder: 'g1-stale' }, r1), KvRevisionConflict);
      await assert.rejects(bus.kvUpdate('lease.missing', { holder: 'g1' }, r2), KvRevisionConflict);
      await assert.rejects(bus.kvUpdate('lease.missing', { holder: 'g1' }, 0), KvRevisionConflict);
      assert.deepEqual(await bus.kvGet('lease.leader'), {
        key: 'lease.leader',
        value: { holder: 'g2' },
        revision: r2,
      });
    });

    test('kvWatch delivers the snapshot before it resolves, then every change under its prefix', async () => {
      const bus = await fresh('watch');
      await bus.kvPut('srv.g1.a', 1);
      await bus.kvPut('srv.g1.b', 2);
      await bus.kvPut('gw.g1', 'not under the prefix');
      const rec = recorder();
      const stop = await bus.kvWatch('srv.', rec.listener);
      assert.deepEqual(
        [...rec.seen].sort(),
        [
          ['srv.g1.a', 1],
          ['srv.g1.b', 2],
        ],
        'the snapshot is there when kvWatch resolves',
      );
      await bus.kvPut('gw.g1', 'still not');
      await bus.kvPut('srv.g1.a', 10);
      await bus.kvDelete('srv.g1.b');
      await bus.kvPut('srv.g2.c', 3);
      await rec.until(5);
      assert.deepEqual(rec.seen.slice(2), [
        ['srv.g1.a', 10],
        ['srv.g1.b', undefined],
        ['srv.g2.c', 3],
      ]);
      stop();
      await bus.kvPut('srv.g1.a', 11);
      // Another watch sees that write: by then the stopped one would have seen it too.
      const probe = recorder();
      const stopProbe = await bus.kvWatch('srv.g1.a', probe.listener);
      stopProbe();
      assert.equal(rec.seen.length, 5, 'a stopped watch delivers nothing more');
    });

    test('a prefix that is not a whole token matches keys that start with it', async () => {
      const bus = await fresh('prefix');
      await bus.kvPut('srv.g1.a', 1);
      await bus.kvPut('srv.g10.a', 2);
      await bus.kvPut('srv.h1.a', 3);
      const rec = recorder();
      const stop = await bus.kvWatch('srv.g1', rec.listener);
      stop();
      assert.deepEqual(rec.seen.map(([k]) => k).sort(), ['srv.g1.a', 'srv.g10.a']);
    });

    test('a watch on an empty bucket resolves at once', async () => {
      const bus = await fresh('empty');
      const rec = recorder();
      const stop = await bus.kvWatch('', rec.listener);
      assert.deepEqual(rec.seen, []);
      await bus.kvPut('k', 'v');
      await rec.until(1);
      stop();
    });

    test('named buckets are separate key spaces with the same operations', async () => {
      const bus = await fresh('named');
      const one = await bus.bucket(uniqueBucket('one'));
      const two = await bus.bucket(uniqueBucket('two'));
      await one.put('gw.g1', { n: 1 });
      await one.put('gw.g2', { n: 2 });
      await one.put('srv.g1.x', { n: 3 });
      assert.equal(await two.get('gw.g1'), undefined);
      assert.equal(await bus.kvGet('gw.g1'), undefined, 'the default bucket is another one');
      const gws = (await one.entries('gw.')).map((e) => [e.key, e.value]).sort();
      assert.deepEqual(gws, [
        ['gw.g1', { n: 1 }],
        ['gw.g2', { n: 2 }],
      ]);
      await one.delete('gw.g2');
      assert.deepEqual(
        (await one.entries('gw.')).map((e) => e.key),
        ['gw.g1'],
      );
      assert.deepEqual(await two.entries(''), []);
      const r = await one.create('lease.x', 1);
      await assert.rejects(one.update('lease.x', 2, r + 100), KvRevisionConflict);
      assert.ok((await one.update('lease.x', 2, r)) > r);
    });

    test('a bucket with history keeps the last values of a key, oldest first, deletes included', async () => {
      const bus = await fresh('history');
      const b = await bus.bucket(uniqueBucket('hist'), { history: 3 });
      assert.deepEqual(await b.history('policy.x'), []);
      const r1 = await b.put('policy.x', { n: 1 });
      const r2 = await b.put('policy.x', { n: 2 });
      await b.put('policy.y', { other: true });
      await b.delete('policy.x');
      const r4 = await b.put('policy.x', { n: 4 });
      const h = await b.history('policy.x');
      assert.deepEqual(
        h.map((e) => e.value),
        [{ n: 2 }, undefined, { n: 4 }],
        'the oldest beyond 3 is gone',
      );
      assert.ok(h[0]!.revision === r2 && h[2]!.revision === r4 && r1 < r2);
      assert.deepEqual((await b.get('policy.x'))?.value, { n: 4 });
      // A bucket without history keeps one value per key.
      const one = await bus.bucket(uniqueBucket('hist1'));
      await one.put('k', 1);
      await one.put('k', 2);
      assert.deepEqual(
        (await one.history('k')).map((e) => e.value),
        [2],
      );
    });

    test('bad bucket names and keys are refused with the problem named', async () => {
      const bus = await fresh('names');
      await assert.rejects(bus.bucket('has.dot'), /bucket name "has\.dot"/);
      await assert.rejects(bus.kvPut('a..b', 1), /kv key "a\.\.b"/);
      await assert.rejects(bus.kvPut('sp ace', 1), /kv key "sp ace"/);
      assert.equal(bus.connected, true);
    });
  });
}

/**
 * Mirrors: region B reads region A's bucket through its own mirror of it. Needs two regions (two
 * JetStream domains joined by a leaf node on NATS; one fabric in memory).
 */
export function federationMirrorContract(
  name: string,
  openRegions: () => Promise<{ a: FederationBus; b: FederationBus; regionA: string }>,
  opts: ContractOptions = {},
): void {
  describe(`FederationBus mirror contract: ${name}`, () => {
    let opened: { a: FederationBus; b: FederationBus; regionA: string } | undefined;
    after(async () => {
      await Promise.all([opened?.a.close(), opened?.b.close()]);
      await opts.teardown?.();
    });

    test("region B's mirror of A's bucket shows A's entries, changes and deletes", async () => {
      opened = await openRegions();
      const { a, b, regionA } = opened;
      const name = uniqueBucket('reg');
      const origin = await a.bucket(name);
      await origin.put('gw.a1', { n: 1 });
      await origin.put('srv.a1.weather', { tools: ['forecast'] });
      const mirror = await b.mirror(name, regionA);
      const rec = recorder();
      // The mirror may still be catching up with what A wrote before it existed: wait for both.
      const stop = await mirror.watch('', rec.listener);
      await rec.until(2);
      assert.deepEqual(rec.seen.map(([k, v]) => [k, v]).sort(), [
        ['gw.a1', { n: 1 }],
        ['srv.a1.weather', { tools: ['forecast'] }],
      ]);
      await origin.put('srv.a1.weather', { tools: ['forecast', 'alerts'] });
      await origin.delete('gw.a1');
      await rec.until(4);
      assert.deepEqual(rec.seen.slice(2), [
        ['srv.a1.weather', { tools: ['forecast', 'alerts'] }],
        ['gw.a1', undefined],
      ]);
      stop();
      assert.deepEqual((await mirror.get('srv.a1.weather'))?.value, { tools: ['forecast', 'alerts'] });
      assert.equal(await mirror.get('gw.a1'), undefined);
      assert.deepEqual(
        (await mirror.entries('')).map((e) => e.key),
        ['srv.a1.weather'],
      );
    });
  });
}
