/**
 * The RegistryStore contract, run on every adapter: versions, history, optimistic concurrency,
 * concurrent writers, and watch across two gateways sharing the store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runtimeServerSchema, type ServerConfig } from '../../shared/config/schema.js';
import {
  RegistryConflictError,
  type RegistryChange,
  type RegistryStore,
} from '../../shared/ports/registry-store.js';

export interface RegistryFixture {
  store: RegistryStore;
  /** A second gateway's store on the same data. */
  peer(): Promise<RegistryStore>;
}

export function server(
  name: string,
  url = `http://127.0.0.1:1/${name}`,
  version?: string,
  more: Record<string, unknown> = {},
): ServerConfig {
  // Through the schema, as the config file and the admin API do: defaults filled in, runtime form.
  return runtimeServerSchema.parse({
    name,
    transport: 'streamable-http',
    url,
    timeouts: { requestMs: 1000, connectMs: 1000 },
    ...(version !== undefined && { version }),
    ...more,
  });
}

/** Resolves with the first change `matches` accepts (watch events may arrive after the write resolves). */
function nextChange(store: RegistryStore, matches: (c: RegistryChange) => boolean): Promise<RegistryChange> {
  return new Promise((resolve) => {
    const stop = store.watch((c) => {
      if (!matches(c)) return;
      stop();
      resolve(c);
    });
  });
}

export function registryStoreContract(
  name: string,
  make: () => Promise<RegistryFixture>,
  opts: { teardown?: () => Promise<void> } = {},
): void {
  describe(`RegistryStore contract: ${name}`, () => {
    let fx: RegistryFixture;
    const peers: RegistryStore[] = [];
    before(async () => {
      fx = await make();
    });
    after(async () => {
      for (const p of peers) await p.close();
      await fx.store.close();
      await opts.teardown?.();
    });
    const peer = async () => {
      const p = await fx.peer();
      peers.push(p);
      return p;
    };

    test('a new server is version 1, with who and when', async () => {
      const t0 = Date.now();
      const e = await fx.store.upsert(server('alpha'), 'alice');
      assert.equal(e.version, 1);
      assert.equal(e.updatedBy, 'alice');
      assert.ok(e.updatedAt >= t0 - 5 && e.updatedAt <= Date.now() + 5);
      const got = await fx.store.get('alpha');
      assert.deepEqual(got?.server, server('alpha'));
      assert.equal(got?.version, 1);
      assert.equal(await fx.store.get('nope'), undefined);
    });

    test('every change is a new version and the history keeps them all', async () => {
      await fx.store.upsert(server('beta', 'http://127.0.0.1:1/b1'), 'alice');
      const v2 = await fx.store.upsert(server('beta', 'http://127.0.0.1:1/b2'), 'bob');
      assert.equal(v2.version, 2);
      assert.equal((await fx.store.get('beta'))?.server.transport, 'streamable-http');
      const h = await fx.store.history('beta');
      assert.deepEqual(
        h.map((v) => [v.version, v.op, v.changedBy, (v.server as { url?: string })?.url]),
        [
          [1, 'upsert', 'alice', 'http://127.0.0.1:1/b1'],
          [2, 'upsert', 'bob', 'http://127.0.0.1:1/b2'],
        ],
      );
    });

    test('a delete hides the server, is kept in the history, and a re-create continues the versions', async () => {
      await fx.store.upsert(server('gamma'), 'alice');
      assert.equal(await fx.store.delete('gamma', 'carol'), true);
      assert.equal(await fx.store.get('gamma'), undefined);
      assert.ok(!(await fx.store.list()).some((e) => e.server.name === 'gamma'));
      assert.equal(await fx.store.delete('gamma', 'carol'), false, 'nothing left to delete');
      const again = await fx.store.upsert(server('gamma'), 'dave', { expectedVersion: 0 });
      assert.equal(again.version, 3);
      assert.deepEqual(
        (await fx.store.history('gamma')).map((v) => [v.version, v.op, v.changedBy]),
        [
          [1, 'upsert', 'alice'],
          [2, 'delete', 'carol'],
          [3, 'upsert', 'dave'],
        ],
      );
    });

    test('list shows live servers by name', async () => {
      await fx.store.upsert(server('zeta'), 'x');
      await fx.store.upsert(server('delta'), 'x');
      const names = (await fx.store.list()).map((e) => e.server.name);
      assert.deepEqual(names, [...names].sort());
      for (const n of ['alpha', 'beta', 'gamma', 'delta', 'zeta']) assert.ok(names.includes(n), n);
    });

    test('optimistic concurrency: a stale version or a create over a live server conflicts', async () => {
      const e = await fx.store.upsert(server('occ'), 'alice', { expectedVersion: 0 });
      await assert.rejects(
        fx.store.upsert(server('occ'), 'bob', { expectedVersion: 0 }),
        (err: unknown) => err instanceof RegistryConflictError && err.actualVersion === 1,
      );
      const e2 = await fx.store.upsert(server('occ', 'http://127.0.0.1:1/x'), 'bob', {
        expectedVersion: e.version,
      });
      assert.equal(e2.version, 2);
      await assert.rejects(
        fx.store.upsert(server('occ'), 'carol', { expectedVersion: 1 }),
        (err: unknown) =>
          err instanceof RegistryConflictError && err.expectedVersion === 1 && err.actualVersion === 2,
      );
      await assert.rejects(fx.store.delete('occ', 'carol', { expectedVersion: 1 }), RegistryConflictError);
      await assert.rejects(
        fx.store.upsert(server('never'), 'carol', { expectedVersion: 4 }),
        RegistryConflictError,
      );
      assert.equal(await fx.store.delete('occ', 'carol', { expectedVersion: 2 }), true);
      assert.equal((await fx.store.history('occ')).length, 3, 'refused writes leave no version');
    });

    test('concurrent writers from two gateways each get their own version', async () => {
      const other = await peer();
      const writes = Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? other : fx.store).upsert(server('busy', `http://127.0.0.1:1/${i}`), `writer-${i}`),
      );
      const versions = (await Promise.all(writes)).map((e) => e.version).sort((a, b) => a - b);
      assert.deepEqual(
        versions,
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      const h = await fx.store.history('busy');
      assert.equal(h.length, 20);
      assert.equal((await fx.store.get('busy'))?.version, 20);
    });

    test('concurrent creates of one name: exactly one wins', async () => {
      const other = await peer();
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? other : fx.store).upsert(server('race'), `w${i}`, { expectedVersion: 0 }),
        ),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1);
      for (const r of results)
        if (r.status === 'rejected') assert.ok(r.reason instanceof RegistryConflictError, String(r.reason));
      assert.equal((await fx.store.history('race')).length, 1);
    });

    test('versions of one server are entries of their own, keyed {name}-{version}', async () => {
      await fx.store.upsert(server('pay', undefined, 'v1'), 'alice');
      await fx.store.upsert(server('pay', undefined, 'v2', { defaultVersion: true }), 'bob');
      await fx.store.upsert(server('pay-other'), 'carol');
      const v2 = await fx.store.get('pay-v2');
      assert.equal(v2?.server.name, 'pay');
      assert.equal(v2?.server.version, 'v2');
      assert.equal(v2?.version, 1, 'each version of the server has its own revisions');
      assert.equal(await fx.store.get('pay'), undefined, 'the plain name is no entry');
      const family = await fx.store.versions('pay');
      assert.deepEqual(
        family.map((e) => [e.server.name, e.server.version]),
        [
          ['pay', 'v1'],
          ['pay', 'v2'],
        ],
      );
      await fx.store.upsert(server('pay', 'http://127.0.0.1:1/v1b', 'v1'), 'alice');
      assert.equal((await fx.store.get('pay-v1'))?.version, 2);
      assert.equal((await fx.store.get('pay-v2'))?.version, 1, 'another version is untouched');
      assert.equal(await fx.store.delete('pay-v1', 'alice'), true);
      assert.deepEqual(
        (await fx.store.versions('pay')).map((e) => e.server.version),
        ['v2'],
      );
      assert.deepEqual(await fx.store.versions('nothing'), []);
    });

    test('concurrent registrations of versions from two gateways: every version once, none lost', async () => {
      const other = await peer();
      const labels = Array.from({ length: 12 }, (_, i) => `v${i + 1}`);
      // Each version registered twice at once (create-only): exactly one of each pair wins.
      const results = await Promise.allSettled(
        labels.flatMap((v, i) => [
          fx.store.upsert(server('multi', undefined, v), `a${i}`, { expectedVersion: 0 }),
          other.upsert(server('multi', undefined, v), `b${i}`, { expectedVersion: 0 }),
        ]),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, labels.length);
      for (const r of results)
        if (r.status === 'rejected') assert.ok(r.reason instanceof RegistryConflictError, String(r.reason));
      const family = await other.versions('multi');
      assert.deepEqual(family.map((e) => e.server.version).sort(), [...labels].sort());
      for (const e of family) assert.equal(e.version, 1);
      for (const v of labels) assert.equal((await fx.store.history(`multi-${v}`)).length, 1, v);
    });

    test("watch: another gateway's change is seen, and its own", async () => {
      const other = await peer();
      const seenHere = nextChange(fx.store, (c) => c.type === 'upsert' && c.entry.server.name === 'watched');
      const seenThere = nextChange(other, (c) => c.type === 'upsert' && c.entry.server.name === 'watched');
      await other.upsert(server('watched'), 'remote-admin');
      const [a, b] = await Promise.all([seenHere, seenThere]);
      assert.ok(a.type === 'upsert' && a.entry.version === 1 && a.entry.updatedBy === 'remote-admin');
      assert.ok(b.type === 'upsert' && b.entry.version === 1);
      const deleted = nextChange(fx.store, (c) => c.type === 'delete' && c.name === 'watched');
      await other.delete('watched', 'remote-admin');
      assert.deepEqual(await deleted, { type: 'delete', name: 'watched', version: 2 });
    });

    test('unsubscribed listeners hear nothing more', async () => {
      const heard: RegistryChange[] = [];
      const stop = fx.store.watch((c) => heard.push(c));
      const done = nextChange(fx.store, (c) => c.type === 'upsert' && c.entry.server.name === 'quiet');
      stop();
      await fx.store.upsert(server('quiet'), 'x');
      await done;
      assert.deepEqual(heard, []);
    });

    test('answers are copies: changing one changes nothing stored', async () => {
      const e = await fx.store.upsert(server('copy'), 'x');
      (e.server as { url: string }).url = 'http://127.0.0.1:1/mutated';
      const got = await fx.store.get('copy');
      assert.equal((got!.server as { url: string }).url, 'http://127.0.0.1:1/copy');
    });
  });
}
