/**
 * Opens the database `store` names (a Postgres server or the embedded PGlite) and brings its schema up
 * to date. `memory` has no database: the caller uses memory adapters.
 */
import { resolve } from 'node:path';
import type { StoreConfig } from '../../config/schema.js';
import type { Logger } from '../../log.js';
import { EmbeddedDatabase } from './embedded-database.js';
import { migrate } from './migrations.js';
import { PgDatabase } from './pg-database.js';
import type { SqlDatabase } from './sql.js';

export async function openStoreDatabase(
  store: StoreConfig,
  opts: { baseDir: string; log?: Logger },
): Promise<SqlDatabase | undefined> {
  if (store.kind === 'memory') return undefined;
  const db: SqlDatabase =
    store.kind === 'postgres'
      ? new PgDatabase({ url: store.url!, schema: store.schema, poolSize: store.poolSize, log: opts.log })
      : await EmbeddedDatabase.open({
          schema: store.schema,
          dataDir: store.dataDir === undefined ? undefined : resolve(opts.baseDir, store.dataDir),
        });
  try {
    const report = await migrate(db);
    if (report.applied.length > 0)
      opts.log?.info({ store: store.kind, schema: store.schema, ...report }, 'store schema migrated');
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  return db;
}
