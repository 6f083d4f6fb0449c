/**
 * Stored policies are enforced live: a policy written through the admin API decides the very next
 * request of an already connected SDK session (no restart, no reconnect), deleting it lets the call
 * through again, a tenant's policy narrows what that tenant's callers use (never widens it), and on a
 * shared Postgres a policy written on one gateway reaches the other by the database's notice. The config
 * file's policy seeds scope "*" and is followed while the file is its last writer (at restart and when
 * the watched file changes). Also: a server registered through the API with a tenant is hidden from
 * other tenants at once.
 */
import { putApiKey } from '../helpers/auth.js';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { MemoryApiKeyStore } from '../../shared/adapters/memory/api-key-store.js';
import { loadConfigFile, validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { ROOT } from '../helpers/net.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const PEPPER = 'a-pepper-of-the-stored-policies-test';
const ADMIN_TOKEN = 'stored-policies-admin-token-0123456789';

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

function keyFor(keys: MemoryApiKeyStore, owner: string, roles: string[], tenant: string) {
  return putApiKey(keys, PEPPER, owner, roles, tenant);
}

function nodeConfig(extra: Record<string, unknown>) {
  return validateConfig(
    {
      role: 'single',
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
      store: { kind: 'memory' },
      auth: { mode: 'api-key', apiKeys: { pepper: PEPPER } },
      admin: { token: ADMIN_TOKEN },
      servers: [scripted('alpha', ['one', 'two'])],
      ...extra,
    },
    'test',
    {},
  );
}

async function api(base: string, method: string, path: string, body?: unknown, headers = {}) {
  const res = await fetch(`${base}/admin/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body !== undefined && { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

function sdkWithKey(url: string, key: string): Promise<SdkClient> {
  return connectSdk(
    'v2',
    url,
    {},
    {
      fetch: (u, init) => {
        const headers = new Headers(init?.headers);
        headers.set('x-api-key', key);
        return fetch(u, { ...init, headers });
      },
    },
  );
}

/** The JSON-RPC error of a call that must be refused. */
async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string; data?: any }> {
  try {
    const r = (await p) as { isError?: boolean; content?: unknown };
    assert.fail(`expected a JSON-RPC error, got ${JSON.stringify(r)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err as { code: number; message: string; data?: any };
  }
}

const names = async (c: SdkClient) => ((await c.listTools()).tools as { name: string }[]).map((t) => t.name);

describe('stored policies on one gateway (memory store)', () => {
  const keys = new MemoryApiKeyStore();
  let node: RunningNode;
  let user: SdkClient;
  let acmeUser: SdkClient;

  before(async () => {
    node = await startSingleNode(nodeConfig({}), { log: createLogger('silent'), apiKeys: keys });
    user = await sdkWithKey(`${node.url}/mcp`, await keyFor(keys, 'bob', ['user'], 'default'));
    acmeUser = await sdkWithKey(`${node.url}/mcp`, await keyFor(keys, 'carl', ['user'], 'acme'));
  });
  after(async () => {
    await user?.close();
    await acmeUser?.close();
    await node?.close();
    await keys.close();
  });

  test('set through the API: the next call of a connected session is refused; deleted: allowed again', async () => {
    const ok = await user.callTool({ name: 'alpha__one', arguments: { x: 1 } });
    assert.ok(!ok.isError);
    assert.deepEqual((await names(user)).filter((n) => n.startsWith('alpha__')).sort(), [
      'alpha__ask',
      'alpha__ask_then_cancel',
      'alpha__change',
      'alpha__crash',
      'alpha__one',
      'alpha__pid',
      'alpha__two',
    ]);

    const heard = new Promise<void>((resolve) =>
      user.onNotification('notifications/tools/list_changed', () => resolve()),
    );
    const put = await api(
      node.url,
      'PUT',
      '/policies/*',
      {
        default: 'allow',
        rules: [{ effect: 'deny', roles: ['user'], servers: ['alpha'], tools: ['one'] }],
      },
      { 'if-match': '"0"' },
    );
    assert.equal(put.status, 200, JSON.stringify(put.json));
    assert.equal(put.json.version, 1);
    // The very next request: no wait, no reconnect.
    const err = await refusal(user.callTool({ name: 'alpha__one', arguments: { x: 1 } }));
    assert.equal(err.code, -32602);
    assert.match(err.message, /Unknown tool: alpha__one/);
    await heard; // the session was told its list changed
    const listed = await names(user);
    assert.ok(!listed.includes('alpha__one') && listed.includes('alpha__two'));
    assert.ok(!(await user.callTool({ name: 'alpha__two', arguments: {} })).isError, 'the rest still works');

    const del = await api(node.url, 'DELETE', '/policies/*');
    assert.equal(del.status, 204);
    const again = await user.callTool({ name: 'alpha__one', arguments: { x: 2 } });
    assert.ok(!again.isError);
    assert.match(JSON.stringify(again.content), /one/);
    assert.equal((await api(node.url, 'GET', '/policies/*')).status, 404);
    assert.equal((await api(node.url, 'DELETE', '/policies/*')).status, 404, 'nothing left to delete');

    // Versions keep growing across the delete; the change log has both.
    const re = await api(node.url, 'PUT', '/policies/*', { default: 'allow' }, { 'if-match': '"0"' });
    assert.equal(re.json.version, 3);
    assert.equal(
      (await api(node.url, 'DELETE', '/policies/*', undefined, { 'if-match': '"2"' })).status,
      409,
    );
    assert.equal(
      (await api(node.url, 'DELETE', '/policies/*', undefined, { 'if-match': '"3"' })).status,
      204,
    );
    const log = await api(node.url, 'GET', '/changes?kind=policy');
    assert.deepEqual(
      log.json.changes.map((c: { op: string; version: number }) => `${c.op}@${c.version}`),
      ['update@1', 'delete@2', 'update@3', 'delete@4'],
    );
  });

  test('argument constraints of a stored policy: a clear JSON-RPC error naming the argument', async () => {
    await api(node.url, 'PUT', '/policies/*', {
      default: 'allow',
      rules: [
        {
          roles: ['user'],
          servers: ['alpha'],
          tools: ['two'],
          arguments: { region: { enum: ['eu'], required: true } },
        },
      ],
    });
    try {
      const err = await refusal(user.callTool({ name: 'alpha__two', arguments: { region: 'us' } }));
      assert.equal(err.code, -32602);
      assert.match(err.message, /\/region must be one of "eu"/);
      assert.ok(!(await user.callTool({ name: 'alpha__two', arguments: { region: 'eu' } })).isError);
    } finally {
      assert.equal((await api(node.url, 'DELETE', '/policies/*')).status, 204);
    }
    assert.ok(!(await user.callTool({ name: 'alpha__two', arguments: { region: 'us' } })).isError);
  });

  test("a tenant's policy applies to its callers only, and cannot widen the gateway's", async () => {
    const t = await api(node.url, 'PUT', '/policies/acme', {
      default: 'deny',
      rules: [{ servers: ['alpha'], tools: ['two'] }],
    });
    assert.equal(t.status, 200, JSON.stringify(t.json));
    try {
      const err = await refusal(acmeUser.callTool({ name: 'alpha__one', arguments: {} }));
      assert.match(err.message, /Unknown tool/);
      assert.ok(!(await acmeUser.callTool({ name: 'alpha__two', arguments: {} })).isError);
      assert.ok(
        !(await user.callTool({ name: 'alpha__one', arguments: {} })).isError,
        'other tenants unaffected',
      );

      // The gateway denies two to everyone: acme's allow of it does not bring it back.
      await api(node.url, 'PUT', '/policies/*', {
        default: 'allow',
        rules: [{ effect: 'deny', servers: ['alpha'], tools: ['two'] }],
      });
      await refusal(acmeUser.callTool({ name: 'alpha__two', arguments: {} }));
    } finally {
      await api(node.url, 'DELETE', '/policies/acme');
      await api(node.url, 'DELETE', '/policies/*');
    }
    assert.ok(!(await acmeUser.callTool({ name: 'alpha__one', arguments: {} })).isError);
  });

  test('a stored policy that the schema refuses is a 400 and changes nothing', async () => {
    const bad = await api(node.url, 'PUT', '/policies/*', { default: 'allow', rules: [{ effect: 'maybe' }] });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.field, 'rules.0.effect');
    assert.ok(!(await user.callTool({ name: 'alpha__one', arguments: {} })).isError);
  });

  test('a server registered with a tenant is hidden from the other tenants at once', async () => {
    const r = await api(node.url, 'POST', '/servers', scripted('acmeonly', ['secret'], 'acme'));
    assert.equal(r.status, 201, JSON.stringify(r.json));
    try {
      // Its start is asynchronous: wait until acme's caller sees it, then the other tenant must not.
      const deadline = Date.now() + 20_000;
      while (!(await names(acmeUser)).includes('acmeonly__secret')) {
        assert.ok(Date.now() < deadline, 'acme never saw its server');
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(!(await names(user)).some((n) => n.startsWith('acmeonly__')));
      const err = await refusal(user.callTool({ name: 'acmeonly__secret', arguments: {} }));
      assert.match(err.message, /Unknown tool/);
    } finally {
      await api(node.url, 'DELETE', '/servers/acmeonly');
    }
  });
});

describe('stored policies on a shared Postgres: written on one gateway, in force on the other', () => {
  const schema = uniqueSchema('pol');
  const keys = new MemoryApiKeyStore();
  let a: RunningNode;
  let b: RunningNode;
  let onB: SdkClient;

  before(async () => {
    const config = nodeConfig({ store: { kind: 'postgres', url: PG_URL, schema } });
    a = await startSingleNode(config, { log: createLogger('silent'), apiKeys: keys });
    b = await startSingleNode(config, { log: createLogger('silent'), apiKeys: keys });
    onB = await sdkWithKey(`${b.url}/mcp`, await keyFor(keys, 'dora', ['user'], 'default'));
  });
  after(async () => {
    await onB?.close();
    await a?.close();
    await b?.close();
    await keys.close();
    await dropSchema(schema);
  });

  test('PUT on A: B refuses within moments; DELETE on A: B allows again', async () => {
    assert.ok(!(await onB.callTool({ name: 'alpha__one', arguments: {} })).isError);
    const put = await api(a.url, 'PUT', '/policies/*', {
      default: 'allow',
      rules: [{ effect: 'deny', servers: ['alpha'], tools: ['one'] }],
    });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    const t0 = Date.now();
    const refusedOnB = async () => {
      try {
        await onB.callTool({ name: 'alpha__one', arguments: {} });
        return false;
      } catch {
        return true;
      }
    };
    while (!(await refusedOnB())) {
      assert.ok(Date.now() - t0 < 10_000, 'B never applied the policy written on A');
      await new Promise((res) => setTimeout(res, 50));
    }
    console.log(`# policy written on A in force on B after ${Date.now() - t0} ms (polled every 50 ms)`);
    // A itself: at once.
    const onA = await sdkWithKey(`${a.url}/mcp`, await keyFor(keys, 'eve', ['user'], 'default'));
    try {
      await refusal(onA.callTool({ name: 'alpha__one', arguments: {} }));
    } finally {
      await onA.close();
    }

    assert.equal((await api(a.url, 'DELETE', '/policies/*')).status, 204);
    const t1 = Date.now();
    while (await refusedOnB()) {
      assert.ok(Date.now() - t1 < 10_000, 'B never dropped the deleted policy');
      await new Promise((res) => setTimeout(res, 50));
    }
    // Tombstone versions on Postgres: a re-create after a delete follows the deleted version.
    const re = await api(a.url, 'PUT', '/policies/*', { default: 'allow' }, { 'if-match': '"0"' });
    assert.equal(re.status, 200, JSON.stringify(re.json));
    assert.equal(re.json.version, 3);
    const stale = await api(a.url, 'PUT', '/policies/*', { default: 'allow' }, { 'if-match': '"0"' });
    assert.equal(stale.status, 409);
    assert.equal(stale.json.error.currentVersion, 3);
    assert.equal((await api(b.url, 'GET', '/policies')).json.policies.length, 1);
    assert.equal((await api(a.url, 'DELETE', '/policies/*', undefined, { 'if-match': '"3"' })).status, 204);
    assert.deepEqual((await api(b.url, 'GET', '/policies')).json.policies, []);
  });
});

describe("the config file's policy seeds scope * and is followed while the file is its last writer", () => {
  test('restart on Postgres: a changed file policy replaces the seeded one; an operator change stays', async () => {
    const schema = uniqueSchema('polseed');
    const keys = new MemoryApiKeyStore();
    const start = (policy: Record<string, unknown>) =>
      startSingleNode(nodeConfig({ store: { kind: 'postgres', url: PG_URL, schema }, policy }), {
        log: createLogger('silent'),
        apiKeys: keys,
      });
    const deny = (tool: string) => ({ default: 'allow', rules: [{ effect: 'deny', tools: [tool] }] });
    let node = await start(deny('one'));
    try {
      const v1 = (await api(node.url, 'GET', '/policies/*')).json;
      assert.deepEqual([v1.version, v1.updatedBy, v1.policy.rules[0].tools], [1, 'config', ['one']]);
      await node.close();
      node = await start(deny('two'));
      const v2 = (await api(node.url, 'GET', '/policies/*')).json;
      assert.deepEqual([v2.version, v2.updatedBy, v2.policy.rules[0].tools], [2, 'config', ['two']]);
      const key = await keyFor(keys, 'fay', ['user'], 'default');
      const c = await sdkWithKey(`${node.url}/mcp`, key);
      try {
        await refusal(c.callTool({ name: 'alpha__two', arguments: {} }));
        assert.ok(!(await c.callTool({ name: 'alpha__one', arguments: {} })).isError);
      } finally {
        await c.close();
      }
      // An operator's policy is not overwritten by the file at the next start.
      assert.equal((await api(node.url, 'PUT', '/policies/*', deny('pid'))).json.version, 3);
      await node.close();
      node = await start(deny('one'));
      const v3 = (await api(node.url, 'GET', '/policies/*')).json;
      assert.deepEqual([v3.version, v3.updatedBy, v3.policy.rules[0].tools], [3, 'admin-token', ['pid']]);
    } finally {
      await node.close();
      await keys.close();
      await dropSchema(schema);
    }
  });

  test('the watched config file: an edit of its policy is in force without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-pol-'));
    const file = join(dir, 'mcpgw.json');
    const doc = (tool: string) => ({
      role: 'single',
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: 'silent' },
      store: { kind: 'memory' },
      servers: [scripted('alpha', ['one', 'two'])],
      policy: { default: 'allow', rules: [{ effect: 'deny', tools: [tool] }] },
    });
    writeFileSync(file, JSON.stringify(doc('one')));
    const node = await startSingleNode(await loadConfigFile(file), {
      log: createLogger('silent'),
      configFile: file,
    });
    const c = await connectSdk('v2', `${node.url}/mcp`);
    try {
      await refusal(c.callTool({ name: 'alpha__one', arguments: {} }));
      writeFileSync(file, JSON.stringify(doc('two')));
      const t0 = Date.now();
      for (;;) {
        try {
          await c.callTool({ name: 'alpha__one', arguments: {} });
          break;
        } catch {
          assert.ok(Date.now() - t0 < 15_000, 'the edited policy never came into force');
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await refusal(c.callTool({ name: 'alpha__two', arguments: {} }));
    } finally {
      await c.close();
      await node.close();
    }
  });
});
