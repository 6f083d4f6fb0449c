/**
 * The RegistryStore contract on memory, on the embedded PGlite and on the machine's real Postgres (a
 * schema of its own, dropped afterwards). No Postgres means failed tests, never skipped ones.
 */
import { MemoryRegistryStore } from '../../shared/adapters/memory/registry-store.js';
import { EmbeddedDatabase } from '../../shared/adapters/postgres/embedded-database.js';
import { migrate } from '../../shared/adapters/postgres/migrations.js';
import { PostgresRegistryStore } from '../../shared/adapters/postgres/registry-store.js';
import { dropSchema, migratedDatabase, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { registryStoreContract } from './registry-store.contract.js';

registryStoreContract('memory', async () => {
  const store = new MemoryRegistryStore();
  return { store, peer: async () => sharedView(store) };
});

registryStoreContract('embedded (PGlite)', async () => {
  const db = await EmbeddedDatabase.open({ schema: 'mcpgw' });
  await migrate(db);
  const store = await PostgresRegistryStore.open(db, { ownsDb: true });
  return { store, peer: () => PostgresRegistryStore.open(db) };
});

const schema = uniqueSchema('reg');
registryStoreContract(
  'postgres',
  async () => {
    const db = await migratedDatabase(schema);
    const store = await PostgresRegistryStore.open(db, { ownsDb: true });
    // The peer is another gateway: its own pool and its own LISTEN connection.
    return {
      store,
      peer: async () =>
        PostgresRegistryStore.open(new PgDatabase({ url: PG_URL, schema, poolSize: 3 }), { ownsDb: true }),
    };
  },
  { teardown: () => dropSchema(schema) },
);

/** Two gateways on one memory store are one process: the peer is the same store, closed separately. */
function sharedView(store: MemoryRegistryStore): MemoryRegistryStore {
  return Object.create(store, { close: { value: async () => {} } }) as MemoryRegistryStore;
}
