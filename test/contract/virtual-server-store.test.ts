/**
 * The VirtualServerStore contract on memory, the embedded PGlite and the machine's real Postgres (a
 * schema of its own, dropped afterwards): versions and history, optimistic concurrency, concurrent
 * writers from two gateways, and a change made on one gateway heard on the other.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MemoryVirtualServerStore } from '../../shared/adapters/memory/virtual-server-store.js';
import { EmbeddedDatabase } from '../../shared/adapters/postgres/embedded-database.js';
import { migrate } from '../../shared/adapters/postgres/migrations.js';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { PostgresVirtualServerStore } from '../../shared/adapters/postgres/virtual-server-store.js';
import { virtualServerSchema, type VirtualServerConfig } from '../../shared/config/virtual-schema.js';
import {
  VirtualServerConflictError,
  type VirtualServerStore,
} from '../../shared/ports/virtual-server-store.js';
import { dropSchema, migratedDatabase, PG_URL, uniqueSchema } from '../helpers/postgres.js';

function vs(name: string, alias = 'find'): VirtualServerConfig {
  return virtualServerSchema.parse({ name, tools: [{ server: 'crm', tool: 'lookup', alias }] });
}

interface Fixture {
  store: VirtualServerStore;
  /** Another gateway's store on the same data. */
  peer(): Promise<VirtualServerStore>;
}

function contract(name: string, make: () => Promise<Fixture>, teardown?: () => Promise<void>): void {
  describe(`VirtualServerStore contract: ${name}`, () => {
    let fx: Fixture;
    const peers: VirtualServerStore[] = [];
    const peer = async () => {
      const p = await fx.peer();
      peers.push(p);
      return p;
    };
    before(async () => {
      fx = await make();
    });
    after(async () => {
      for (const p of peers) await p.close();
      await fx.store.close();
      await teardown?.();
    });

    test('versions grow across updates, a delete and a re-create; the history keeps who and when', async () => {
      const a = await fx.store.put(vs('billing'), 'alice', 0);
      assert.equal(a.version, 1);
      assert.equal(a.updatedBy, 'alice');
      const b = await fx.store.put(vs('billing', 'search'), 'bob', 1);
      assert.equal(b.version, 2);
      assert.equal((await fx.store.get('billing'))?.virtualServer.tools[0]?.alias, 'search');
      assert.equal(await fx.store.delete('billing', 'carol'), true);
      assert.equal(await fx.store.get('billing'), undefined);
      assert.equal(await fx.store.delete('billing', 'carol'), false);
      assert.equal((await fx.store.put(vs('billing'), 'dave', 0)).version, 4);
      assert.deepEqual(
        (await fx.store.history('billing')).map((v) => [v.version, v.op, v.changedBy, v.virtualServer?.name]),
        [
          [1, 'upsert', 'alice', 'billing'],
          [2, 'upsert', 'bob', 'billing'],
          [3, 'delete', 'carol', undefined],
          [4, 'upsert', 'dave', 'billing'],
        ],
      );
      assert.ok((await fx.store.list()).some((e) => e.virtualServer.name === 'billing'));
    });

    test('a stale version, or a create over a live one, conflicts and writes nothing', async () => {
      await fx.store.put(vs('occ'), 'x', 0);
      await assert.rejects(
        fx.store.put(vs('occ'), 'y', 0),
        (e: unknown) => e instanceof VirtualServerConflictError && e.actualVersion === 1,
      );
      await assert.rejects(
        fx.store.put(vs('occ'), 'y', 5),
        (e: unknown) => e instanceof VirtualServerConflictError && e.expectedVersion === 5,
      );
      await assert.rejects(fx.store.delete('occ', 'y', 3), VirtualServerConflictError);
      assert.equal((await fx.store.history('occ')).length, 1);
    });

    test('concurrent writers on two gateways: one create wins, every update gets its own version', async () => {
      const other = await peer();
      const creates = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => (i % 2 ? other : fx.store).put(vs('race'), `w${i}`, 0)),
      );
      assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1);
      const updates = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? other : fx.store).put(vs('race', `a${i}`), `u${i}`)),
      );
      assert.deepEqual(
        updates.map((e) => e.version).sort((a, b) => a - b),
        Array.from({ length: 10 }, (_, i) => i + 2),
      );
    });

    test('a change on one gateway is heard on the other', async () => {
      const other = await peer();
      const heard = new Promise<string>((resolve) => {
        const stop = other.watch((n) => {
          if (n !== 'watched') return;
          stop();
          resolve(n);
        });
      });
      await fx.store.put(vs('watched'), 'x');
      assert.equal(await heard, 'watched');
    });
  });
}

contract('memory', async () => {
  const store = new MemoryVirtualServerStore();
  // One process: the peer is the same store, closed separately.
  return { store, peer: async () => Object.create(store, { close: { value: async () => {} } }) };
});

contract('embedded (PGlite)', async () => {
  const db = await EmbeddedDatabase.open({ schema: 'mcpgw' });
  await migrate(db);
  const store = await PostgresVirtualServerStore.open(db);
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    await db.close();
  };
  return { store, peer: () => PostgresVirtualServerStore.open(db) };
});

const schema = uniqueSchema('vsrv');
const dbs: PgDatabase[] = [];
contract(
  'postgres',
  async () => {
    const db = await migratedDatabase(schema);
    dbs.push(db);
    return {
      store: await PostgresVirtualServerStore.open(db),
      // Another gateway: its own pool and its own LISTEN connection.
      peer: async () => {
        const other = new PgDatabase({ url: PG_URL, schema, poolSize: 3 });
        dbs.push(other);
        return PostgresVirtualServerStore.open(other);
      },
    };
  },
  async () => {
    for (const d of dbs) await d.close();
    await dropSchema(schema);
  },
);
