/**
 * Migrations on the real Postgres: from an empty schema, again (nothing to do), and from two processes
 * and two pools at once (applied exactly once). The embedded PGlite runs the same list.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { EmbeddedDatabase } from '../../shared/adapters/postgres/embedded-database.js';
import { migrate, MIGRATIONS } from '../../shared/adapters/postgres/migrations.js';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { dropSchema, PG_URL, uniqueSchema, withClient } from '../helpers/postgres.js';

const run = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('../fixtures/migrate-schema.js', import.meta.url));
const ALL = MIGRATIONS.map((m) => m.version);
const made: string[] = [];
after(async () => {
  for (const s of made) await dropSchema(s);
});

function schema(): string {
  const s = uniqueSchema('mig');
  made.push(s);
  return s;
}

async function tables(s: string): Promise<string[]> {
  const r = await withClient((c) =>
    c.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
      [s],
    ),
  );
  return r.rows.map((x) => x.table_name);
}

test('from an empty database every migration applies; the second run applies none', async () => {
  const s = schema();
  const db = new PgDatabase({ url: PG_URL, schema: s, poolSize: 2 });
  try {
    assert.deepEqual(await migrate(db), { applied: ALL, current: Math.max(...ALL) });
    assert.deepEqual(await migrate(db), { applied: [], current: Math.max(...ALL) });
  } finally {
    await db.close();
  }
  assert.deepEqual(await tables(s), [
    'admin_changes',
    'admin_policies',
    'admin_policy_history',
    'audit_chain_heads',
    'audit_checkpoints',
    'audit_records',
    'registry_history',
    'registry_servers',
    'schema_migrations',
    'tool_approvals',
    'vault_credentials',
    'virtual_server_history',
    'virtual_servers',
  ]);
  const rows = await withClient((c) =>
    c.query(`SELECT version, name FROM ${s}.schema_migrations ORDER BY version`),
  );
  assert.deepEqual(
    rows.rows,
    MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
  );
});

test('two processes migrating one schema at once: applied exactly once', async () => {
  const s = schema();
  const outs = await Promise.all([0, 1].map(() => run(process.execPath, [FIXTURE, PG_URL, s])));
  const reports = outs.map((o) => JSON.parse(o.stdout) as { applied: number[]; current: number });
  const applied = reports.map((r) => r.applied).sort((a, b) => b.length - a.length);
  assert.deepEqual(applied, [ALL, []], 'one applied everything, the other waited and found nothing to do');
  assert.ok(reports.every((r) => r.current === Math.max(...ALL)));
});

test('four pools migrating one schema at once: applied exactly once', async () => {
  const s = schema();
  const dbs = [0, 1, 2, 3].map(() => new PgDatabase({ url: PG_URL, schema: s, poolSize: 1 }));
  try {
    const reports = await Promise.all(dbs.map((db) => migrate(db)));
    assert.equal(reports.filter((r) => r.applied.length > 0).length, 1);
    assert.deepEqual(
      reports.flatMap((r) => r.applied),
      ALL,
    );
  } finally {
    await Promise.all(dbs.map((db) => db.close()));
  }
});

test('a failing migration leaves nothing half-applied', async () => {
  const s = schema();
  const db = new PgDatabase({ url: PG_URL, schema: s, poolSize: 1 });
  try {
    const broken = [
      ...MIGRATIONS,
      { version: 99, name: 'broken', sql: 'CREATE TABLE x (a int); SELECT nope;' },
    ];
    await assert.rejects(migrate(db, broken), /nope/);
    assert.deepEqual(await tables(s), [], 'the whole transaction rolled back');
    assert.deepEqual((await migrate(db)).applied, ALL);
  } finally {
    await db.close();
  }
});

test('the embedded store runs the same migrations, idempotently', async () => {
  const db = await EmbeddedDatabase.open({ schema: 'tenant_a' });
  try {
    assert.deepEqual((await migrate(db)).applied, ALL);
    assert.deepEqual((await migrate(db)).applied, []);
    const r = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'tenant_a'`,
    );
    assert.equal(r.rows[0]?.n, 13);
  } finally {
    await db.close();
  }
});
