/**
 * Governance state on the real Postgres (own schema): approvals survive a new store on the same database
 * (the newest per tool wins, every one kept in the history), and lifecycle transitions are validated and
 * recorded in the registry's history with who made them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PostgresApprovalStore } from '../../shared/adapters/postgres/approval-store.js';
import { PostgresRegistryStore } from '../../shared/adapters/postgres/registry-store.js';
import type { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { runtimeServerSchema } from '../../shared/config/schema.js';
import { GatewayError } from '../../shared/errors.js';
import { definitionHash } from '../../core/governance/pinning.js';
import { transitionLifecycle } from '../../core/governance/lifecycle.js';
import { dropSchema, migratedDatabase, uniqueSchema, withClient } from '../helpers/postgres.js';

const schema = uniqueSchema('gov');
let db: PgDatabase;

describe('governance on Postgres', () => {
  before(async () => {
    db = await migratedDatabase(schema);
  });
  after(async () => {
    await db.close();
    await dropSchema(schema);
  });

  test('migration 20 creates the approvals table', async () => {
    const rows = await withClient((c) =>
      c.query(
        `SELECT version FROM ${schema}.schema_migrations WHERE version BETWEEN 20 AND 29 ORDER BY version`,
      ),
    );
    assert.deepEqual(
      rows.rows.map((r) => r.version),
      [20],
    );
  });

  test('approvals: the newest per tool is pinned, every one is kept', async () => {
    const store = new PostgresApprovalStore(db);
    const v1 = { name: 'lookup', description: 'Looks up', inputSchema: { type: 'object' } };
    const v2 = { ...v1, description: 'Looks up, then more' };
    await store.approve({
      server: 'acct',
      tool: 'lookup',
      hash: definitionHash(v1),
      definition: v1,
      approvedAt: 1000,
      approvedBy: 'first-seen',
    });
    await store.approve({
      server: 'acct',
      tool: 'lookup',
      hash: definitionHash(v2),
      definition: v2,
      approvedAt: 2000,
      approvedBy: 'alice',
    });
    await store.approve({
      server: 'other',
      tool: 'lookup',
      hash: definitionHash(v1),
      definition: v1,
      approvedAt: 3000,
      approvedBy: 'bob',
    });
    const again = new PostgresApprovalStore(db);
    const [pinned, ...rest] = await again.list('acct');
    assert.equal(rest.length, 0);
    assert.equal(pinned?.hash, definitionHash(v2));
    assert.deepEqual(pinned?.definition, v2);
    assert.equal(pinned?.approvedBy, 'alice');
    assert.equal(pinned?.approvedAt, 2000);
    assert.deepEqual(
      (await again.history('acct', 'lookup')).map((a) => a.approvedBy),
      ['first-seen', 'alice'],
    );
    await assert.rejects(
      store.approve({
        server: 'acct',
        tool: 'x',
        hash: 'not-a-hash',
        definition: v1,
        approvedAt: 1,
        approvedBy: 'eve',
      }),
      /check constraint/,
    );
  });

  test('lifecycle transitions are validated and recorded with who made them', async () => {
    const registry = await PostgresRegistryStore.open(db);
    const server = runtimeServerSchema.parse({
      name: 'payments',
      transport: 'stdio',
      command: 'x',
      lifecycle: 'draft',
    });
    await registry.upsert(server, 'config');
    await transitionLifecycle(registry, { server: 'payments', to: 'active', by: 'alice' });
    await transitionLifecycle(registry, {
      server: 'payments',
      tool: 'transfer',
      to: 'deprecated',
      deprecationNotice: 'use transfer_v2',
      by: 'bob',
    });
    await transitionLifecycle(registry, { server: 'payments', tool: 'transfer', to: 'retired', by: 'carol' });
    const err = await transitionLifecycle(registry, {
      server: 'payments',
      tool: 'transfer',
      to: 'active',
      by: 'mallory',
    }).catch((e: unknown) => e);
    assert.ok(err instanceof GatewayError);
    assert.equal(err.code, 'GW_LIFECYCLE_TRANSITION');
    assert.match(err.message, /retired -> active is not allowed/);
    const entry = await registry.get('payments');
    assert.equal(entry?.server.lifecycle, 'active');
    assert.equal(entry?.server.tools.transfer?.lifecycle, 'retired');
    assert.equal(entry?.server.tools.transfer?.deprecationNotice, 'use transfer_v2');
    assert.deepEqual(
      (await registry.history('payments')).map((h) => h.changedBy),
      ['config', 'alice', 'bob', 'carol'],
    );
    assert.equal(await transitionLifecycle(registry, { server: 'nope', to: 'active', by: 'x' }), undefined);
    await registry.close();
  });
});
