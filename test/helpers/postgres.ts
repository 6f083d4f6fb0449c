/**
 * The machine's real Postgres (127.0.0.1:5432, user root, database test, or MCPGW_TEST_PG_URL), one
 * schema per test run so that parallel runs never meet; every schema made here is dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { migrate } from '../../shared/adapters/postgres/migrations.js';

export const PG_URL = process.env.MCPGW_TEST_PG_URL ?? 'postgres://root@127.0.0.1:5432/test';

export function uniqueSchema(prefix = 't'): string {
  return `mcpgw_${prefix}_${randomBytes(5).toString('hex')}`;
}

/** A pool on a fresh, migrated schema. */
export async function migratedDatabase(schema = uniqueSchema()): Promise<PgDatabase> {
  const db = new PgDatabase({ url: PG_URL, schema, poolSize: 5 });
  await migrate(db);
  return db;
}

/** Raw SQL as an operator (or an attacker) with a psql prompt would run it. */
export async function withClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await withClient((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
}
