/**
 * Several versions of one server at once, as a client and an operator meet them: a gateway on the real
 * Postgres (its own schema), an SDK client over HTTP. Each version is addressable (`payments-v1__charge`,
 * `/servers/payments-v1/mcp`), the default one is served under the plain name, versions registered
 * concurrently through the admin API all run, and moving the default is a live change.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { ROOT } from '../helpers/net.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

function payments(version: string | undefined, tools: string[], more: Record<string, unknown> = {}) {
  return {
    name: 'payments',
    ...(version !== undefined && { version }),
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
    ...more,
  };
}

const names = async (c: SdkClient) => ((await c.listTools()).tools as { name: string }[]).map((t) => t.name);
/** The process id of the backend a `{prefix}__pid` call reaches: which version answered. */
const pidOf = async (c: SdkClient, tool: string) => {
  const r = await c.callTool({ name: tool, arguments: {} });
  assert.ok(!r.isError, JSON.stringify(r));
  return (r.content as { text: string }[])[0]!.text;
};
const changed = (c: SdkClient) =>
  new Promise<void>((resolve) => c.onNotification('notifications/tools/list_changed', () => resolve()));

describe('server versions on Postgres, through an SDK client', () => {
  const schema = uniqueSchema('vers');
  let node: RunningNode;
  let base: string;
  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/admin/api/v1${path}`, {
      method,
      headers: { ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    const config = validateConfig(
      {
        role: 'single',
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
        store: { kind: 'postgres', url: PG_URL, schema },
        servers: [payments('v1', ['charge']), payments('v2', ['charge', 'refund'])],
      },
      'test',
      {},
    );
    node = await startSingleNode(config, { log: createLogger(config.log.level) });
    base = node.url;
  });
  after(async () => {
    await node?.close();
    await dropSchema(schema);
  });

  test('the default (highest) version under the plain name, every other under {name}-{version}', async () => {
    const c = await connectSdk('v2', `${base}/mcp`);
    try {
      const listed = await names(c);
      for (const n of ['payments__charge', 'payments__refund', 'payments-v1__charge'])
        assert.ok(listed.includes(n), `${n} in ${listed.join(', ')}`);
      assert.ok(!listed.includes('payments-v2__charge'), 'the default is listed once, under the plain name');
      assert.ok(!listed.includes('payments-v1__refund'));
      const plain = await pidOf(c, 'payments__pid');
      assert.equal(await pidOf(c, 'payments-v2__pid'), plain, 'the default is reachable by its id too');
      assert.notEqual(await pidOf(c, 'payments-v1__pid'), plain);
      const echo = await c.callTool({ name: 'payments-v1__charge', arguments: { amount: 5 } });
      assert.match((echo.content as { text: string }[])[0]!.text, /charge/);
      await assert.rejects(c.callTool({ name: 'payments-v9__charge', arguments: {} }), /Unknown tool/);
    } finally {
      await c.close();
    }
  });

  test('/servers/{name}/mcp: the plain name is the default version, {name}-{version} that version', async () => {
    const v1 = await connectSdk('v2', `${base}/servers/payments-v1/mcp`);
    const dflt = await connectSdk('v2', `${base}/servers/payments/mcp`);
    try {
      assert.deepEqual(
        (await names(v1)).filter((n) => !SCRIPTED_EXTRAS.has(n)),
        ['charge'],
      );
      assert.deepEqual(
        (await names(dflt)).filter((n) => !SCRIPTED_EXTRAS.has(n)),
        ['charge', 'refund'],
      );
    } finally {
      await v1.close();
      await dflt.close();
    }
    const unknown = await fetch(`${base}/servers/payments-v7/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      }),
    });
    assert.equal(unknown.status, 404);
    assert.match(await unknown.text(), /Unknown server: payments-v7/);
  });

  test('versions registered concurrently through the admin API all run; the listing names the default', async () => {
    const c = await connectSdk('v2', `${base}/mcp`);
    try {
      const heard = changed(c);
      const created = await Promise.all([
        api('POST', '/servers', payments('v3', ['charge', 'void'])),
        api('POST', '/servers', payments('v10', ['charge', 'settle'])),
        api('POST', '/servers', payments('v3', ['charge', 'void'])),
      ]);
      assert.deepEqual(created.map((r) => r.status).sort(), [201, 201, 409]);
      assert.equal(created.find((r) => r.status === 201)?.json.family, 'payments');
      await heard;
      const v = await api('GET', '/servers/payments/versions');
      assert.equal(v.status, 200);
      assert.equal(v.json.default, 'payments-v10', 'v10 is higher than v3 and v2');
      assert.deepEqual(
        v.json.versions.map((x: { name: string; serverVersion: string; default: boolean }) => [
          x.name,
          x.serverVersion,
          x.default,
        ]),
        [
          ['payments-v1', 'v1', false],
          ['payments-v10', 'v10', true],
          ['payments-v2', 'v2', false],
          ['payments-v3', 'v3', false],
        ],
      );
      // The gateway applies the registry: the new default serves the plain name once its process runs,
      // and each other version under its id once its own process runs (they start independently).
      const expected = [
        'payments__settle',
        'payments-v3__void',
        'payments-v2__refund',
        'payments-v1__charge',
      ];
      let listed: string[] = [];
      for (let i = 0; i < 150 && !expected.every((n) => listed.includes(n)); i++) {
        listed = await names(c);
        if (!expected.every((n) => listed.includes(n))) await new Promise((r) => setTimeout(r, 100));
      }
      for (const n of expected) assert.ok(listed.includes(n), `${n} not in ${listed.join(', ')}`);
      assert.equal((await api('GET', '/servers/nosuch/versions')).status, 404);
      const plain = await api('GET', '/servers/payments');
      assert.equal(plain.status, 404);
      assert.match(
        plain.json.error.message,
        /runs in versions \(payments-v1, payments-v10, payments-v2, payments-v3\)/,
      );
    } finally {
      await c.close();
    }
  });

  test('marking another version the default moves the plain name, live, for a connected session', async () => {
    const c = await connectSdk('v2', `${base}/mcp`);
    try {
      const v1Pid = await pidOf(c, 'payments-v1__pid');
      const heard = changed(c);
      const cur = await api('GET', '/servers/payments-v1');
      const put = await api(
        'PUT',
        '/servers/payments-v1',
        payments('v1', ['charge'], { defaultVersion: true }),
        {
          'if-match': `"${cur.json.version}"`,
        },
      );
      assert.equal(put.status, 200, JSON.stringify(put.json));
      await heard;
      assert.equal((await api('GET', '/servers/payments/versions')).json.default, 'payments-v1');
      let listed: string[] = [];
      for (let i = 0; i < 100 && !listed.includes('payments-v10__settle'); i++) {
        listed = await names(c);
        if (!listed.includes('payments-v10__settle')) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(listed.includes('payments-v10__settle'), listed.join(', '));
      assert.ok(listed.includes('payments__charge') && !listed.includes('payments__settle'));
      assert.ok(!listed.includes('payments-v1__charge'));
      // v1 was restarted by its update: its new process answers under the plain name.
      const plain = await pidOf(c, 'payments__pid');
      assert.equal(await pidOf(c, 'payments-v1__pid'), plain);
      assert.notEqual(plain, v1Pid, 'the changed entry restarted the backend');
      // A PUT whose body names another version than the URL is refused, naming the field.
      const wrong = await api('PUT', '/servers/payments-v1', payments('v2', ['charge']));
      assert.equal(wrong.status, 400);
      assert.equal(wrong.json.error.field, 'version');
    } finally {
      await c.close();
    }
  });
});

/** The tools scripted-server.ts always has besides its catalog. */
const SCRIPTED_EXTRAS = new Set(['pid', 'crash', 'change', 'ask', 'ask_then_cancel']);
