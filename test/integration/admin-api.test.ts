/**
 * The admin REST API as an operator meets it, through real sockets against a gateway on the real
 * Postgres (its own schema): auth (401 without a credential, 403 without the admin role), servers
 * registered live (a connected SDK session survives and hears tools/list_changed), bad input (400 naming
 * the field), unknown objects (404), stale versions (409), concurrent writers (no lost update), the
 * change log, API keys, policies, tenant admins confined to their tenant, and the OpenAPI document.
 */
import { putApiKey } from '../helpers/auth.js';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { MemoryApiKeyStore } from '../../shared/adapters/memory/api-key-store.js';
import { migrate } from '../../shared/adapters/postgres/migrations.js';
import { PgDatabase } from '../../shared/adapters/postgres/pg-database.js';
import { loadConfigFile, validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { ROOT } from '../helpers/net.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const PEPPER = 'a-pepper-of-the-admin-api-test';

function scripted(name: string, tools: string[], tenant?: string) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
    ...(tenant && { tenant }),
  };
}

test('migrations from an empty schema create the admin tables (version 10)', async () => {
  const schema = uniqueSchema('admmig');
  const db = new PgDatabase({ url: PG_URL, schema, poolSize: 2 });
  try {
    const r = await migrate(db);
    assert.ok(r.applied.includes(10));
    const t = await db.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'admin_%' ORDER BY 1`,
      [schema],
    );
    assert.deepEqual(
      t.rows.map((x) => x.table_name),
      ['admin_changes', 'admin_policies', 'admin_policy_history'],
    );
    assert.deepEqual((await migrate(db)).applied, []);
  } finally {
    await db.close();
    await dropSchema(schema);
  }
});

describe('the admin API on Postgres', () => {
  const schema = uniqueSchema('admin');
  const keys = new MemoryApiKeyStore();
  let node: RunningNode;
  let base: string;
  const key = (owner: string, roles: string[], tenant = 'default') =>
    putApiKey(keys, PEPPER, owner, roles, tenant);
  let admin: string;
  let user: string;
  let adminA: string;
  let adminB: string;
  const api = async (
    credential: string | undefined,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const res = await fetch(`${base}/admin/api/v1${path}`, {
      method,
      headers: {
        ...(credential && { 'x-api-key': credential }),
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    admin = await key('alice', ['admin']);
    user = await key('bob', ['user']);
    adminA = await key('ann', ['tenant-admin'], 'acme');
    adminB = await key('ben', ['tenant-admin'], 'bolt');
    const config = validateConfig(
      {
        role: 'single',
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
        store: { kind: 'postgres', url: PG_URL, schema },
        auth: { mode: 'api-key', apiKeys: { pepper: PEPPER } },
        policy: { default: 'allow', rules: [] },
        servers: [scripted('alpha', ['one'])],
      },
      'test',
      {},
    );
    node = await startSingleNode(config, { log: createLogger(config.log.level), apiKeys: keys });
    base = node.url;
  });
  after(async () => {
    await node?.close();
    await keys.close();
    await dropSchema(schema);
  });

  test('no credential: 401; a caller without an admin role: 403', async () => {
    const none = await api(undefined, 'GET', '/servers');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /Bearer/);
    const bad = await api('mcpgw_nope12_' + 'x'.repeat(40), 'GET', '/servers');
    assert.equal(bad.status, 401);
    const u = await api(user, 'GET', '/servers');
    assert.equal(u.status, 403);
    assert.match(u.json.error.message, /admin/);
  });

  test('list with health and version; the seeded server is there', async () => {
    const r = await api(admin, 'GET', '/servers');
    assert.equal(r.status, 200);
    const alpha = r.json.servers.find((s: { name: string }) => s.name === 'alpha');
    assert.equal(alpha.version, 1);
    assert.equal(alpha.updatedBy, 'config');
    assert.equal(alpha.health.state, 'ready');
    assert.equal(alpha.server.env.FIXTURE_CATALOG, '***', 'env values are secrets');
    const caps = await api(admin, 'GET', '/servers/alpha/capabilities');
    assert.ok(caps.json.tools.some((t: { name: string }) => t.name === 'one'));
  });

  test('a server registered through the API reaches a connected session as list_changed; the session survives', async () => {
    const client = await connectSdk(
      'v2',
      `${base}/mcp`,
      {},
      {
        fetch: (url, init) => {
          const headers = new Headers(init?.headers);
          headers.set('x-api-key', user);
          return fetch(url, { ...init, headers });
        },
      },
    );
    try {
      const names = async () => ((await client.listTools()).tools as { name: string }[]).map((t) => t.name);
      assert.ok((await names()).includes('alpha__one'));
      let heardAt = 0;
      const heard = new Promise<void>((resolve) =>
        client.onNotification('notifications/tools/list_changed', () => {
          heardAt ||= performance.now();
          resolve();
        }),
      );
      const t0 = performance.now();
      const r = await api(admin, 'POST', '/servers', scripted('beta', ['two']));
      const answered = performance.now();
      assert.equal(r.status, 201);
      assert.equal(r.json.version, 1);
      assert.equal(r.headers.get('etag'), '"1"');
      await heard;
      // The figure of docs/admin-api.md: from the API call to the notification (includes spawning beta).
      console.log(
        `# admin API -> list_changed: ${(heardAt - t0).toFixed(1)} ms (API answered after ${(answered - t0).toFixed(1)} ms)`,
      );
      assert.ok((await names()).includes('beta__two'));
      const call = await client.callTool({ name: 'beta__two', arguments: { x: 1 } });
      assert.ok(!call.isError);

      // An update (new tool list) and a delete: the same session hears both.
      const again = () =>
        new Promise<void>((resolve) =>
          client.onNotification('notifications/tools/list_changed', () => resolve()),
        );
      let next = again();
      const u = await api(admin, 'PUT', '/servers/beta', scripted('beta', ['two', 'three']), {
        'if-match': '"1"',
      });
      assert.equal(u.status, 200);
      assert.equal(u.json.version, 2);
      await next;
      assert.ok((await names()).includes('beta__three'));
      next = again();
      assert.equal(
        (await api(admin, 'DELETE', '/servers/beta', undefined, { 'if-match': '"2"' })).status,
        204,
      );
      await next;
      assert.ok(!(await names()).includes('beta__two'));
      assert.ok((await client.ping()) !== undefined, 'the session is still alive');
    } finally {
      await client.close();
    }
  });

  test('bad input: 400 naming the field; unknown: 404; stale version: 409', async () => {
    const missing = await api(admin, 'POST', '/servers', { transport: 'stdio' });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error.field, 'body.name');
    const wrong = await api(admin, 'POST', '/servers', {
      name: 'gamma',
      transport: 'stdio',
      args: 'not-a-list',
      command: 'x',
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.error.field, 'args');
    const unknown = await api(admin, 'GET', '/servers/nosuch');
    assert.equal(unknown.status, 404);
    assert.equal((await api(admin, 'DELETE', '/servers/nosuch')).status, 404);
    const dup = await api(admin, 'POST', '/servers', scripted('alpha', ['one']));
    assert.equal(dup.status, 409);
    const stale = await api(admin, 'PUT', '/servers/alpha', scripted('alpha', ['one']), {
      'if-match': '"99"',
    });
    assert.equal(stale.status, 409);
    assert.equal(stale.json.error.currentVersion, 1);
    const badMatch = await api(admin, 'PUT', '/servers/alpha', scripted('alpha', ['one']), {
      'if-match': 'yesterday',
    });
    assert.equal(badMatch.status, 400);
    assert.equal(badMatch.json.error.field, 'If-Match');
  });

  test('concurrent updates from one version: exactly one wins, the rest get 409 (no lost update)', async () => {
    assert.equal((await api(admin, 'POST', '/servers', scripted('delta', ['d']))).status, 201);
    const tries = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        api(
          admin,
          'PUT',
          '/servers/delta',
          { ...scripted('delta', ['d']), description: `writer ${i}` },
          { 'if-match': '"1"' },
        ),
      ),
    );
    const won = tries.filter((t) => t.status === 200);
    assert.equal(won.length, 1);
    assert.equal(tries.filter((t) => t.status === 409).length, 7);
    const now = await api(admin, 'GET', '/servers/delta');
    assert.equal(now.json.version, 2);
    assert.equal(now.json.server.description, won[0]!.json.server.description);
    // Distinct names registered at once: every one lands.
    const many = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        api(admin, 'POST', '/servers', {
          name: `par${i}`,
          transport: 'streamable-http',
          url: 'http://127.0.0.1:1/mcp',
          enabled: false,
        }),
      ),
    );
    assert.deepEqual(
      many.map((m) => m.status),
      Array(6).fill(201),
    );
    const h = await api(admin, 'GET', '/servers/delta/history');
    assert.deepEqual(
      h.json.versions.map((v: { version: number }) => v.version),
      [1, 2],
    );
    assert.equal(h.json.versions[1].changedBy, 'api-key:alice');
  });

  test('the change log names who changed what, when', async () => {
    const r = await api(admin, 'GET', '/changes?kind=server&limit=1000');
    assert.equal(r.status, 200);
    const beta = r.json.changes.filter((c: { target: string }) => c.target === 'beta');
    assert.deepEqual(
      beta.map((c: { op: string }) => c.op),
      ['create', 'update', 'delete'],
    );
    assert.ok(
      beta.every(
        (c: { actor: string; at: string }) => c.actor === 'api-key:alice' && !Number.isNaN(Date.parse(c.at)),
      ),
    );
    assert.equal((await api(admin, 'GET', '/changes?limit=0')).status, 400);
  });

  test('API keys: created (secret once), authenticating, rotated, revoked', async () => {
    const c = await api(admin, 'POST', '/keys', { owner: 'carol', roles: ['admin'] });
    assert.equal(c.status, 201);
    const k1 = c.json.key as string;
    assert.equal((await api(k1, 'GET', '/servers')).status, 200);
    const listed = await api(admin, 'GET', '/keys');
    const rec = listed.json.keys.find((k: { id: string }) => k.id === c.json.id);
    assert.equal(rec.key, undefined);
    assert.equal(rec.hash, undefined);
    const rot = await api(admin, 'POST', `/keys/${c.json.id}/rotate`);
    const k2 = rot.json.key as string;
    assert.notEqual(k2, k1);
    assert.equal((await api(k1, 'GET', '/servers')).status, 401);
    assert.equal((await api(k2, 'GET', '/servers')).status, 200);
    assert.equal((await api(admin, 'POST', `/keys/${c.json.id}/revoke`)).status, 200);
    assert.equal((await api(k2, 'GET', '/servers')).status, 401);
    assert.equal((await api(admin, 'POST', '/keys/unknown99/revoke')).status, 404);
    assert.equal((await api(admin, 'POST', '/keys', { roles: [] })).json.error.field, 'body.owner');
  });

  test('policies: seeded from the config file, replaced with versions, 409 on a stale version', async () => {
    const g = await api(admin, 'GET', '/policies/*');
    assert.equal(g.status, 200);
    assert.equal(g.json.version, 1);
    assert.equal(g.json.updatedBy, 'config');
    const bad = await api(admin, 'PUT', '/policies/*', { default: 'maybe' }, { 'if-match': '"1"' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.field, 'default');
    const ok = await api(admin, 'PUT', '/policies/*', { default: 'deny', rules: [] }, { 'if-match': '"1"' });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.version, 2);
    assert.equal(
      (await api(admin, 'PUT', '/policies/*', { default: 'allow' }, { 'if-match': '"1"' })).status,
      409,
    );
    // Restore for the other tests: the stored policy is the one in force (a deny-all would refuse them).
    await api(admin, 'PUT', '/policies/*', { default: 'allow' }, { 'if-match': '"2"' });
  });

  test("tenant admins manage their own tenant's servers, keys and policies only", async () => {
    const a = await api(adminA, 'POST', '/servers', {
      name: 'acme-api',
      transport: 'streamable-http',
      url: 'http://127.0.0.1:1/mcp',
      enabled: false,
    });
    assert.equal(a.status, 201);
    assert.equal(a.json.tenant, 'acme', "the tenant admin's tenant is the server's");
    const other = await api(adminA, 'POST', '/servers', {
      name: 'x',
      transport: 'streamable-http',
      url: 'http://127.0.0.1:1/mcp',
      tenant: 'bolt',
    });
    assert.equal(other.status, 400);
    assert.equal(other.json.error.field, 'tenant');
    // Tenant B sees none of it.
    assert.equal((await api(adminB, 'GET', '/servers/acme-api')).status, 404);
    assert.equal((await api(adminB, 'DELETE', '/servers/acme-api')).status, 404);
    assert.equal((await api(adminB, 'GET', '/servers/acme-api/history')).status, 404);
    assert.deepEqual((await api(adminB, 'GET', '/servers')).json.servers, []);
    assert.deepEqual(
      (await api(adminA, 'GET', '/servers')).json.servers.map((s: { name: string }) => s.name),
      ['acme-api'],
    );
    assert.equal((await api(adminA, 'GET', '/servers/alpha')).status, 404, "shared servers are the admin's");
    // Keys: A creates in acme, B cannot see or revoke it; A cannot mint an admin.
    const k = await api(adminA, 'POST', '/keys', { owner: 'dev', roles: ['user'] });
    assert.equal(k.json.tenant, 'acme');
    assert.equal((await api(adminB, 'POST', `/keys/${k.json.id}/revoke`)).status, 404);
    assert.ok(!(await api(adminB, 'GET', '/keys')).json.keys.some((x: { id: string }) => x.id === k.json.id));
    assert.equal((await api(adminA, 'POST', '/keys', { owner: 'evil', roles: ['admin'] })).status, 403);
    // Policies: its tenant's scope only.
    assert.equal(
      (await api(adminA, 'PUT', '/policies/acme', { default: 'allow' }, { 'if-match': '"0"' })).status,
      200,
    );
    assert.equal((await api(adminB, 'GET', '/policies/acme')).status, 404);
    assert.equal((await api(adminA, 'GET', '/policies/*')).status, 404);
    // The change log: each tenant admin sees its tenant's changes only.
    const log = (await api(adminB, 'GET', '/changes')).json.changes;
    assert.deepEqual(log, []);
    const logA = (await api(adminA, 'GET', '/changes')).json.changes;
    assert.ok(logA.length >= 3 && logA.every((c: { tenant: string }) => c.tenant === 'acme'));
  });

  test('the OpenAPI document describes the routes; the UI is served', async () => {
    // With gateway auth on, the document and UI need a credential too (any valid one).
    const res = await fetch(`${base}/admin/api/v1/openapi.json`, { headers: { 'x-api-key': user } });
    const doc = (await res.json()) as any;
    assert.equal(res.status, 200, JSON.stringify(doc));
    assert.equal(doc.openapi, '3.0.3');
    assert.ok(doc.paths['/admin/api/v1/servers']?.post);
    assert.ok(doc.paths['/admin/api/v1/keys/{id}/rotate']);
    assert.ok(doc.paths['/admin/api/v1/changes']?.get);
    const ui = await fetch(`${base}/admin/api/v1/docs/`, { headers: { 'x-api-key': user } });
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /swagger/i);
  });
});

test('the config file is watched: a server added to it reaches a live session as list_changed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-watch-'));
  const file = join(dir, 'mcpgw.yaml');
  const doc = (servers: unknown[]) =>
    JSON.stringify({
      role: 'single',
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: 'silent' },
      store: { kind: 'memory' },
      servers,
    });
  writeFileSync(file, doc([scripted('alpha', ['one'])]));
  const config = await loadConfigFile(file);
  const node = await startSingleNode(config, { log: createLogger('silent'), configFile: file });
  const client = await connectSdk('v2', `${node.url}/mcp`);
  try {
    const names = async () => ((await client.listTools()).tools as { name: string }[]).map((t) => t.name);
    assert.deepEqual(
      (await names()).filter((n) => n.endsWith('__one')),
      ['alpha__one'],
    );
    const heard = new Promise<void>((resolve) =>
      client.onNotification('notifications/tools/list_changed', () => resolve()),
    );
    writeFileSync(file, doc([scripted('alpha', ['one']), scripted('omega', ['late'])]));
    await heard;
    assert.ok((await names()).includes('omega__late'));
    assert.ok(!(await client.callTool({ name: 'alpha__one', arguments: {} })).isError, 'same session');
  } finally {
    await client.close();
    await node.close();
  }
});
