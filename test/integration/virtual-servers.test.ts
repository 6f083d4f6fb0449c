/**
 * Virtual servers as clients and operators meet them: a gateway on the real Postgres (its own schema)
 * with API-key callers, SDK clients over real HTTP on /v/{name}/mcp. A session sees only the chosen
 * tools, prompts and resources under their aliases; calls reach the underlying server (a plain server
 * name follows its default version); policy and tenancy still decide per caller; an unknown virtual
 * server is a 404 that says so; the admin API creates, replaces (If-Match) and deletes them live.
 */
import { putApiKey } from '../helpers/auth.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { MemoryApiKeyStore } from '../../shared/adapters/memory/api-key-store.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { MCP_HEADERS, raw } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const PEPPER = 'a-pepper-of-the-virtual-server-test';

function scripted(
  name: string,
  catalog: { tools?: string[]; prompts?: string[]; resources?: string[] },
  more: Record<string, unknown> = {},
) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify(catalog), FIXTURE_NAME: `${name}${more.version ?? ''}` },
    ...more,
  };
}

const toolNames = async (c: SdkClient) =>
  ((await c.listTools()).tools as { name: string }[]).map((t) => t.name);
const text = (r: { content?: unknown }) => (r.content as { text: string }[])[0]!.text;
/** The gateway's error code of a refused request (JSON-RPC error data.code). */
const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return { code: (err as { data?: { code?: string } }).data?.code, message: (err as Error).message };
  }
  assert.fail('expected the request to be refused');
};

describe('virtual servers on Postgres, through SDK clients over HTTP', () => {
  const schema = uniqueSchema('virt');
  const keys = new MemoryApiKeyStore();
  let node: RunningNode;
  let base: string;
  const key = (owner: string, roles: string[], tenant = 'default') =>
    putApiKey(keys, PEPPER, owner, roles, tenant);
  let admin: string;
  let alice: string;
  let acme: string;
  const client = (path: string, credential: string) =>
    connectSdk(
      'v2',
      `${base}${path}`,
      {},
      {
        fetch: (url, init) => {
          const headers = new Headers(init?.headers);
          headers.set('x-api-key', credential);
          return fetch(url, { ...init, headers });
        },
      },
    );
  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/admin/api/v1${path}`, {
      method,
      headers: {
        'x-api-key': admin,
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const t = await res.text();
    return { status: res.status, headers: res.headers, json: t ? JSON.parse(t) : undefined };
  };

  before(async () => {
    admin = await key('root', ['admin']);
    alice = await key('alice', ['user']);
    acme = await key('ann', ['user'], 'acme');
    const config = validateConfig(
      {
        role: 'single',
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
        store: { kind: 'postgres', url: PG_URL, schema },
        auth: { mode: 'api-key', apiKeys: { pepper: PEPPER } },
        policy: {
          default: 'allow',
          rules: [{ effect: 'deny', roles: ['user'], servers: ['crm'], tools: ['delete_contact'] }],
        },
        servers: [
          scripted('payments', { tools: ['charge', 'refund'] }, { version: 'v1' }),
          scripted('payments', { tools: ['charge', 'refund', 'void'] }, { version: 'v2' }),
          scripted('crm', {
            tools: ['lookup', 'delete_contact'],
            prompts: ['summary', 'internal'],
            resources: ['crm://contacts', 'crm://secret'],
          }),
          scripted('ops', { tools: ['restart'] }, { tenant: 'acme' }),
        ],
        virtualServers: [
          {
            name: 'billing',
            description: 'Billing for the support desk',
            tools: [
              { server: 'payments', tool: 'charge', alias: 'charge_card', description: 'Charge a card' },
              { server: 'payments-v1', tool: 'refund', alias: 'refund_legacy' },
              { server: 'crm', tool: 'lookup' },
              { server: 'crm', tool: 'delete_contact' },
            ],
            prompts: [{ server: 'crm', prompt: 'summary', alias: 'customer_summary' }],
            resources: [{ server: 'crm', uri: 'crm://contacts' }],
          },
          { name: 'acme-ops', tenant: 'acme', tools: [{ server: 'ops', tool: 'restart' }] },
        ],
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

  test('a session sees only the chosen tools, prompts and resources, under their aliases', async () => {
    const c = await client('/v/billing/mcp', alice);
    try {
      assert.equal(c.getServerVersion()?.name, 'billing');
      assert.equal(
        (c as unknown as { getInstructions(): string }).getInstructions(),
        'Billing for the support desk',
      );
      const tools = (await c.listTools()).tools as { name: string; description?: string }[];
      // delete_contact is chosen, but the policy hides it from role user.
      assert.deepEqual(
        tools.map((t) => t.name),
        ['charge_card', 'refund_legacy', 'lookup'],
      );
      assert.equal(tools[0]!.description, 'Charge a card');
      const prompts = (await c.listPrompts()).prompts as { name: string }[];
      assert.deepEqual(
        prompts.map((p) => p.name),
        ['customer_summary'],
      );
      const resources = (await c.listResources()).resources as { uri: string }[];
      assert.deepEqual(
        resources.map((r) => r.uri),
        ['crm://contacts'],
      );
    } finally {
      await c.close();
    }
  });

  test('calls route to the underlying server; what is not chosen or is denied does not exist', async () => {
    const c = await client('/v/billing/mcp', alice);
    try {
      // `payments` means its default version (v2, the highest); `payments-v1` that version.
      const charge = await c.callTool({ name: 'charge_card', arguments: { amount: 7 } });
      assert.match(text(charge), /charge/);
      assert.match(text(charge), /"amount":7/);
      assert.match(text(await c.callTool({ name: 'refund_legacy', arguments: {} })), /refund/);
      assert.match(text(await c.callTool({ name: 'lookup', arguments: { q: 'x' } })), /lookup/);
      for (const name of ['payments__charge', 'charge', 'void', 'delete_contact', 'refund']) {
        const r = await codeOf(c.callTool({ name, arguments: {} }));
        assert.equal(r.code, 'GW_UNKNOWN_TOOL', name);
      }
      const got = await c.getPrompt({ name: 'customer_summary' });
      assert.match(JSON.stringify(got.messages), /prompt summary/);
      assert.equal((await codeOf(c.getPrompt({ name: 'internal' }))).code, 'GW_UNKNOWN_PROMPT');
      const read = await c.readResource({ uri: 'crm://contacts' });
      assert.match(JSON.stringify(read.contents), /content of crm:\/\/contacts from crm/);
      // crm has crm://secret: a refusal means the gateway did not ask it.
      await assert.rejects(c.readResource({ uri: 'crm://secret' }), (err: Error & { code?: number }) => {
        assert.ok(err.code === -32002 || err.code === -32602, String(err.code)); // the eras differ
        assert.match(err.message, /Resource not found: crm:\/\/secret/);
        return true;
      });
    } finally {
      await c.close();
    }
    // An admin is not denied delete_contact by the policy: the same virtual server shows it.
    const a = await client('/v/billing/mcp', admin);
    try {
      assert.ok((await toolNames(a)).includes('delete_contact'));
      assert.match(text(await a.callTool({ name: 'delete_contact', arguments: {} })), /delete_contact/);
    } finally {
      await a.close();
    }
  });

  test("an unknown virtual server, or another tenant's, is a 404 that says so", async () => {
    const init = (path: string, credential: string) =>
      raw(`${base}${path}`, {
        headers: { ...MCP_HEADERS, 'x-api-key': credential },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: {
            protocolVersion: '2025-11-25',
            capabilities: {},
            clientInfo: { name: 't', version: '1' },
          },
        },
      });
    const unknown = await init('/v/nosuch/mcp', alice);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.message, 'Unknown virtual server: nosuch');
    assert.equal(unknown.json.error.data.code, 'GW_UNKNOWN_VIRTUAL_SERVER');
    const foreign = await init('/v/acme-ops/mcp', alice);
    assert.equal(foreign.status, 404);
    assert.equal(foreign.json.error.data.code, 'GW_UNKNOWN_VIRTUAL_SERVER');
    assert.equal((await init('/v/nosuch/mcp', 'not-a-key')).status, 401, 'authentication comes first');
    const own = await client('/v/acme-ops/mcp', acme);
    try {
      assert.deepEqual(await toolNames(own), ['restart']);
      assert.match(text(await own.callTool({ name: 'restart', arguments: {} })), /restart/);
    } finally {
      await own.close();
    }
  });

  test("a server registered at run time for one tenant is another tenant's nowhere (/mcp, virtual servers)", async () => {
    const r = await api(
      'POST',
      '/servers',
      scripted('acme-tools', { tools: ['secret_op'] }, { tenant: 'acme' }),
    );
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const v = await api('POST', '/virtual-servers', {
      name: 'acme-mixed',
      tools: [
        { server: 'acme-tools', tool: 'secret_op' },
        { server: 'crm', tool: 'lookup' },
      ],
    });
    assert.equal(v.status, 201, JSON.stringify(v.json));
    const mine = await client('/mcp', acme);
    const theirs = await client('/mcp', alice);
    const mixed = await client('/v/acme-mixed/mcp', alice);
    try {
      let listed: string[] = [];
      for (let i = 0; i < 100 && !listed.includes('acme-tools__secret_op'); i++) {
        listed = await toolNames(mine);
        if (!listed.includes('acme-tools__secret_op')) await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(listed.includes('acme-tools__secret_op'), listed.join(', '));
      assert.ok(!(await toolNames(theirs)).some((n) => n.startsWith('acme-tools')));
      assert.equal(
        (await codeOf(theirs.callTool({ name: 'acme-tools__secret_op', arguments: {} }))).code,
        'GW_UNKNOWN_TOOL',
      );
      // The shared virtual server shows alice only what she may see.
      assert.deepEqual(await toolNames(mixed), ['lookup']);
      assert.equal(
        (await codeOf(mixed.callTool({ name: 'secret_op', arguments: {} }))).code,
        'GW_UNKNOWN_TOOL',
      );
    } finally {
      await mine.close();
      await theirs.close();
      await mixed.close();
    }
    assert.equal((await api('DELETE', '/virtual-servers/acme-mixed')).status, 204);
  });

  test('admin API: create, replace with If-Match (live list_changed), history, change log, delete', async () => {
    const seeded = await api('GET', '/virtual-servers');
    assert.deepEqual(
      seeded.json.virtualServers.map((v: { name: string; updatedBy: string }) => [v.name, v.updatedBy]),
      [
        ['acme-ops', 'config'],
        ['billing', 'config'],
      ],
    );
    const def = { name: 'support', tools: [{ server: 'crm', tool: 'lookup', alias: 'find_customer' }] };
    const created = await api('POST', '/virtual-servers', def);
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal(created.headers.get('etag'), '"1"');
    assert.equal(created.json.endpoint, '/v/support/mcp');
    assert.equal((await api('POST', '/virtual-servers', def)).status, 409);

    const c = await client('/v/support/mcp', alice);
    try {
      assert.deepEqual(await toolNames(c), ['find_customer']);
      const heard = new Promise<void>((resolve) =>
        c.onNotification('notifications/tools/list_changed', () => resolve()),
      );
      const next = {
        ...def,
        tools: [...def.tools, { server: 'payments-v2', tool: 'void', alias: 'void_payment' }],
      };
      const stale = await api('PUT', '/virtual-servers/support', next, { 'if-match': '"7"' });
      assert.equal(stale.status, 409);
      assert.equal(stale.json.error.currentVersion, 1);
      const put = await api('PUT', '/virtual-servers/support', next, { 'if-match': '"1"' });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.equal(put.json.version, 2);
      await heard;
      assert.deepEqual(await toolNames(c), ['find_customer', 'void_payment']);
      assert.match(text(await c.callTool({ name: 'void_payment', arguments: {} })), /void/);

      // Bad input names the field.
      const badRef = await api('POST', '/virtual-servers', {
        name: 'broken',
        tools: [{ server: 'nosuch', tool: 'x' }],
      });
      assert.equal(badRef.status, 400);
      assert.equal(badRef.json.error.field, 'tools.0.server');
      const twice = await api('POST', '/virtual-servers', {
        name: 'broken',
        tools: [
          { server: 'crm', tool: 'lookup' },
          { server: 'payments', tool: 'lookup' },
        ],
      });
      assert.equal(twice.status, 400);
      assert.equal(twice.json.error.field, 'tools.1.alias');
      const noTool = await api('POST', '/virtual-servers', { name: 'broken', tools: [{ server: 'crm' }] });
      assert.equal(noTool.status, 400);
      assert.equal(noTool.json.error.field, 'tools.0.tool');
      assert.equal((await api('GET', '/virtual-servers/nosuch')).status, 404);

      const h = await api('GET', '/virtual-servers/support/history');
      assert.deepEqual(
        h.json.versions.map((v: { version: number; op: string; changedBy: string }) => [
          v.version,
          v.op,
          v.changedBy,
        ]),
        [
          [1, 'upsert', 'api-key:root'],
          [2, 'upsert', 'api-key:root'],
        ],
      );
      const log = await api('GET', '/changes?kind=virtual-server');
      assert.deepEqual(
        log.json.changes
          .filter((x: { target: string }) => x.target === 'support')
          .map((x: { target: string; op: string; version: number }) => [x.target, x.op, x.version]),
        [
          ['support', 'create', 1],
          ['support', 'update', 2],
        ],
      );

      // Deleted: the open session is told it no longer exists; a new one gets 404.
      assert.equal(
        (await api('DELETE', '/virtual-servers/support', undefined, { 'if-match': '"2"' })).status,
        204,
      );
      // The endpoint itself is gone: HTTP 404 naming it, as for a new session.
      await assert.rejects(
        c.callTool({ name: 'find_customer', arguments: {} }),
        /Unknown virtual server: support.*GW_UNKNOWN_VIRTUAL_SERVER/,
      );
      await assert.rejects(client('/v/support/mcp', alice));
    } finally {
      await c.close().catch(() => {});
    }
  });
});
