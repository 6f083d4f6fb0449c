/**
 * The registry as operators meet it: seeded from the config file at every start without clobbering
 * their own changes, kept on disk by the embedded store across restarts, and applied live: a server
 * another gateway (or an admin) adds or deletes in the shared Postgres appears on or leaves /mcp
 * without a restart.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { seedRegistry } from '../../core/registry/seed.js';
import { MemoryRegistryStore } from '../../shared/adapters/memory/registry-store.js';
import { EmbeddedDatabase } from '../../shared/adapters/postgres/embedded-database.js';
import { PostgresRegistryStore } from '../../shared/adapters/postgres/registry-store.js';
import { runtimeServerSchema, type ServerConfig } from '../../shared/config/schema.js';
import { startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { dropSchema, migratedDatabase, PG_URL, uniqueSchema, withClient } from '../helpers/postgres.js';
import { configFile, mcpgw } from '../helpers/cli.js';
import { connectSdk } from '../helpers/sdk-clients.js';
import { server } from '../contract/registry-store.contract.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

function scripted(name: string, tools: string[]) {
  return {
    name,
    transport: 'stdio' as const,
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
  };
}

describe('seeding from the config file', () => {
  test('idempotent: a second start with the same file makes no new version', async () => {
    const store = new MemoryRegistryStore();
    const first = await seedRegistry(store, [server('a'), server('b')]);
    assert.deepEqual(first.created, ['a', 'b']);
    const second = await seedRegistry(store, [server('a'), server('b')]);
    assert.deepEqual(second, { created: [], updated: [], deleted: [], kept: [] });
    assert.equal((await store.history('a')).length, 1);
  });

  test('a changed file updates what the file owns, and drops what it no longer names', async () => {
    const store = new MemoryRegistryStore();
    await seedRegistry(store, [server('a'), server('b')]);
    const r = await seedRegistry(store, [server('a', 'http://127.0.0.1:1/new')]);
    assert.deepEqual([r.updated, r.deleted], [['a'], ['b']]);
    assert.equal((await store.get('a'))?.version, 2);
    assert.equal(await store.get('b'), undefined);
  });

  test("an operator's change is newer than the file: kept, and not brought back after a delete", async () => {
    const store = new MemoryRegistryStore();
    await seedRegistry(store, [server('a'), server('b'), server('c')]);
    await store.upsert(server('a', 'http://127.0.0.1:1/by-admin'), 'admin:alice');
    await store.delete('b', 'admin:alice');
    await store.upsert(server('extra'), 'admin:alice');
    const r = await seedRegistry(store, [
      server('a', 'http://127.0.0.1:1/file-v2'),
      server('b'),
      server('c'),
    ]);
    assert.deepEqual(r.kept.sort(), ['a', 'b']);
    assert.equal(((await store.get('a'))?.server as { url: string }).url, 'http://127.0.0.1:1/by-admin');
    assert.equal(await store.get('b'), undefined);
    assert.ok(await store.get('extra'), "servers an operator added are not the file's to delete");
  });
});

test('the embedded store keeps the registry on disk: an operator change survives a restart', async () => {
  const dataDir = join(mkdtempSync(join(tmpdir(), 'mcpgw-pglite-')), 'data');
  const doc = { store: { kind: 'embedded', dataDir }, servers: [scripted('alpha', ['one'])] };
  const node = await startGateway(doc);
  assert.equal(node.core.backend('alpha')?.config.transport, 'stdio');
  await node.close();

  // The operator changes alpha while no gateway runs (PGlite is one process's).
  const db = await EmbeddedDatabase.open({ schema: 'mcpgw', dataDir });
  const store = await PostgresRegistryStore.open(db, { ownsDb: true });
  const entry = await store.get('alpha');
  assert.equal(entry?.updatedBy, 'config');
  await store.upsert({ ...entry!.server, description: 'tuned by an operator' } as ServerConfig, 'admin:bob', {
    expectedVersion: entry!.version,
  });
  await store.close();

  const again = await startGateway(doc);
  try {
    assert.equal(again.core.backend('alpha')?.config.description, 'tuned by an operator');
    const h = await again.stores.registry.history('alpha');
    assert.deepEqual(
      h.map((v) => [v.version, v.changedBy]),
      [
        [1, 'config'],
        [2, 'admin:bob'],
      ],
    );
  } finally {
    await again.close();
  }
});

describe('changes made by another gateway apply live', () => {
  const schema = uniqueSchema('live');
  let admin: PostgresRegistryStore;
  before(async () => {
    admin = await PostgresRegistryStore.open(await migratedDatabase(schema), { ownsDb: true });
  });
  after(async () => {
    await admin.close();
    await dropSchema(schema);
  });

  test('a server added in the shared registry appears on /mcp, and goes when deleted', async () => {
    const node = await startGateway({
      store: { kind: 'postgres', url: PG_URL, schema },
      servers: [scripted('alpha', ['one'])],
    });
    const client = await connectSdk('v2', `${node.url}/mcp`);
    try {
      const names = async () => ((await client.listTools()).tools as { name: string }[]).map((t) => t.name);
      assert.ok((await names()).includes('alpha__one'));
      const changed = () =>
        new Promise<void>((resolve) =>
          client.onNotification('notifications/tools/list_changed', () => resolve()),
        );

      let heard = changed();
      // As an admin API would: the same schema as the config file.
      await admin.upsert(runtimeServerSchema.parse(scripted('beta', ['two'])), 'admin:carol', {
        expectedVersion: 0,
      });
      await heard;
      assert.ok((await names()).includes('beta__two'));
      const r = await client.callTool({ name: 'beta__two', arguments: { x: 1 } });
      assert.ok(!r.isError);

      heard = changed();
      await admin.delete('beta', 'admin:carol');
      await heard;
      assert.equal(node.core.backend('beta'), undefined);
      assert.ok(!(await names()).includes('beta__two'));
    } finally {
      await client.close();
      await node.close();
    }
  });
});

describe('secrets inside registry entries are sealed with the vault key', () => {
  const schema = uniqueSchema('seal');
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-keys-'));
  const keyA = join(dir, 'a.key');
  const keyB = join(dir, 'b.key');
  writeFileSync(keyA, randomBytes(32).toString('base64'));
  writeFileSync(keyB, randomBytes(32).toString('base64'));
  const token = `tok-${randomBytes(10).toString('hex')}`;
  const header = `Bearer hdr-${randomBytes(10).toString('hex')}`;
  const store = { kind: 'postgres', url: PG_URL, schema };
  const servers = [
    {
      ...scripted('alpha', ['one']),
      env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['one'] }), API_TOKEN: token },
    },
    {
      name: 'remote',
      transport: 'streamable-http',
      url: 'http://127.0.0.1:9/mcp',
      headers: { authorization: header },
    },
  ];
  after(() => dropSchema(schema));

  async function inDatabase(value: string): Promise<boolean> {
    const r = await withClient((c) =>
      c.query<{ t: string }>(
        `SELECT t::text AS t FROM ${schema}.registry_servers t UNION ALL SELECT h::text FROM ${schema}.registry_history h`,
      ),
    );
    return r.rows.some((x) => x.t.includes(value));
  }

  test('stored sealed, started with the real values, re-sealed by rotate-key', async () => {
    const node = await startGateway({ store, vault: { keyFile: keyA }, servers });
    try {
      const alpha = node.core.backend('alpha')!.config as { env: Record<string, string> };
      assert.equal(alpha.env.API_TOKEN, token, 'the backend gets the real value');
      assert.equal(await inDatabase(token), false);
      assert.equal(await inDatabase(header.slice(7)), false);
      assert.equal(await inDatabase('mcpgw-sealed:1:'), true);
    } finally {
      await node.close();
    }
    const cfg = configFile({ store, vault: { keyFile: keyB, previousKeyFiles: [keyA] } });
    const r = await mcpgw(['vault', 'rotate-key', '--config', cfg]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /4 registry row\(s\) with sealed headers or env re-sealed/);
    // The new key alone now opens the registry, and a restart with the same file makes no new version.
    const again = await startGateway({ store, vault: { keyFile: keyB }, servers });
    try {
      assert.equal(
        (again.core.backend('alpha')!.config as { env: Record<string, string> }).env.API_TOKEN,
        token,
      );
      assert.equal((await again.stores.registry.history('alpha')).length, 1);
    } finally {
      await again.close();
    }
  });

  test('a sealed entry read without the key fails saying so', async () => {
    await assert.rejects(
      startGateway({ store, servers }),
      /server "(alpha|remote)": (env|headers)\.\w+ is sealed with vault key k[0-9a-f]+, and no vault key is configured/,
    );
  });
});
