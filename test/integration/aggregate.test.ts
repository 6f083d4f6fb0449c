/**
 * The aggregate view on /mcp: namespaced, client-safe, deterministic names; the gateway's own pagination;
 * resource URIs that stay resolvable; one shared stdio process whatever the session churn; and backends
 * that fail or die giving clean errors, never hangs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, rawSession, sseMessages, startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const LONG = 'a_very_long_tool_name_that_goes_on_and_on_well_past_what_many_clients_accept_as_a_name';
const many = Array.from({ length: 120 }, (_, i) => `tool_${String(i).padStart(3, '0')}`);

function scripted(name: string, catalog: Record<string, unknown>) {
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: { FIXTURE_CATALOG: JSON.stringify(catalog), FIXTURE_NAME: name },
    restart: { initialDelayMs: 50, maxDelayMs: 200 },
  };
}

function childCount(script: string): number {
  const out = execFileSync('ps', ['-o', 'args=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(script)).length;
}

describe('the aggregate view on /mcp', () => {
  let gw: RunningNode;
  let mcp: string;
  const call = async (sid: string, id: number, method: string, params?: unknown) =>
    (
      await raw(mcp, {
        headers: { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
        body: { jsonrpc: '2.0', id, method, params },
      })
    ).json;

  async function listAll(sid: string, method: string, key: string): Promise<any[]> {
    const out: any[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = await call(sid, 100 + pages, method, cursor ? { cursor } : {});
      assert.ok(r.result, JSON.stringify(r));
      out.push(...r.result[key]);
      cursor = r.result.nextCursor;
      pages++;
    } while (cursor);
    return out;
  }

  before(async () => {
    gw = await startGateway({
      aggregate: { pageSize: 50 },
      servers: [
        scripted('alpha', {
          tools: ['search', 'files.read', LONG, ...many],
          prompts: ['greet'],
          resources: ['file:///shared.txt', 'alpha://only'],
          pageSize: 40,
        }),
        scripted('beta', {
          tools: ['search', 'files_read'],
          prompts: ['greet'],
          resources: ['file:///shared.txt'],
        }),
        {
          name: 'broken',
          transport: 'stdio',
          command: '/nonexistent/mcp-server',
          restart: { initialDelayMs: 50, maxDelayMs: 100, failedAfter: 1 },
        },
      ],
    });
    mcp = `${gw.url}/mcp`;
  });
  after(async () => gw?.close());

  test('tool names are prefixed, valid for every client, unique, and the same in every session', async () => {
    const s1 = await rawSession(mcp);
    const s2 = await rawSession(mcp);
    const tools1 = await listAll(s1, 'tools/list', 'tools');
    const tools2 = await listAll(s2, 'tools/list', 'tools');
    const names = tools1.map((t) => t.name);
    assert.deepEqual(
      names,
      tools2.map((t) => t.name),
    );
    // Each scripted server adds five tools of its own (pid, crash, change, ask, ask_then_cancel).
    assert.equal(names.length, 3 + 120 + 5 + 2 + 5);
    assert.equal(new Set(names).size, names.length);
    for (const n of names) assert.match(n, /^[a-zA-Z0-9_-]{1,64}$/);
    assert.ok(names.includes('alpha__search') && names.includes('beta__search'));
    assert.ok(names.includes('beta__files_read'));
    const dotted = names.find((n) => n.startsWith('alpha__files_read_'));
    assert.ok(dotted, 'alpha files.read gets a hashed name distinct from beta__files_read');
    const long = names.find((n) => n.startsWith('alpha__a_very_long'));
    assert.ok(long && long.length <= 64);
    // Hashed names route back to the original tool.
    const r1 = await call(s1, 1, 'tools/call', { name: dotted, arguments: { x: 1 } });
    assert.deepEqual(JSON.parse(r1.result.content[0].text), { tool: 'files.read', arguments: { x: 1 } });
    const r2 = await call(s2, 2, 'tools/call', { name: long, arguments: {} });
    assert.equal(JSON.parse(r2.result.content[0].text).tool, LONG);
  });

  test('a session can call a plain prefixed tool before listing', async () => {
    const s = await rawSession(mcp);
    const r = await call(s, 1, 'tools/call', { name: 'beta__search', arguments: { q: 'x' } });
    assert.deepEqual(JSON.parse(r.result.content[0].text), { tool: 'search', arguments: { q: 'x' } });
  });

  test('pages are cut by the gateway and a cursor from another list is refused', async () => {
    const s = await rawSession(mcp);
    const first = await call(s, 1, 'tools/list');
    assert.equal(first.result.tools.length, 50);
    assert.ok(first.result.nextCursor);
    const wrong = await call(s, 2, 'prompts/list', { cursor: first.result.nextCursor });
    assert.equal(wrong.error.code, -32602);
  });

  test('resources keep unique URIs; colliding URIs get gateway URIs that read from the right server', async () => {
    const s = await rawSession(mcp);
    const resources = await listAll(s, 'resources/list', 'resources');
    const uris = resources.map((r) => r.uri);
    assert.ok(uris.includes('alpha://only'));
    assert.ok(!uris.includes('file:///shared.txt'));
    const shared = uris.filter((u) => u.startsWith('mcpgw://resource/'));
    assert.equal(shared.length, 2);
    for (const u of shared) {
      const r = await call(s, 3, 'resources/read', { uri: u });
      const server = u.includes('/alpha/') ? 'alpha' : 'beta';
      assert.equal(r.result.contents[0].text, `content of file:///shared.txt from ${server}`);
      assert.equal(r.result.contents[0].uri, u);
    }
    const only = await call(s, 4, 'resources/read', { uri: 'alpha://only' });
    assert.match(only.result.contents[0].text, /from alpha/);
    const missing = await call(s, 5, 'resources/read', { uri: 'nowhere://x' });
    assert.equal(missing.error.code, -32002);
  });

  test('prompts are namespaced and routed', async () => {
    const s = await rawSession(mcp);
    const prompts = await listAll(s, 'prompts/list', 'prompts');
    assert.deepEqual(prompts.map((p) => p.name).sort(), ['alpha__greet', 'beta__greet']);
    const r = await call(s, 1, 'prompts/get', { name: 'beta__greet' });
    assert.equal(r.result.messages[0].content.text, 'prompt greet');
  });

  test('/servers/{name}/mcp shows one server with its own names and identity', async () => {
    const client = await connectSdk('v2', `${gw.url}/servers/beta/mcp`);
    assert.equal(client.getServerVersion().name, 'scripted');
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t: any) => t.name).sort(), [
      'ask',
      'ask_then_cancel',
      'change',
      'crash',
      'files_read',
      'pid',
      'search',
    ]);
    const r = await client.callTool({ name: 'search', arguments: {} });
    assert.equal(JSON.parse(r.content[0].text).tool, 'search');
    await client.close();
  });

  test('one stdio process per server, whatever the session churn', async () => {
    const pids = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const s = await rawSession(mcp);
      const r = await call(s, 1, 'tools/call', { name: 'alpha__pid', arguments: {} });
      pids.add(r.result.content[0].text);
      await raw(mcp, { method: 'DELETE', headers: { 'mcp-session-id': s } });
    }
    assert.equal(pids.size, 1);
    assert.equal(childCount('scripted-server.js'), 2);
  });

  test('a backend that cannot start gives a clean error and /readyz reports it as failed', async () => {
    const s = await rawSession(mcp);
    const r = await call(s, 1, 'tools/call', { name: 'broken__anything', arguments: {} });
    assert.equal(r.error.code, -32603);
    assert.equal(r.error.data.code, 'GW_BACKEND_UNAVAILABLE');
    assert.match(r.error.message, /broken/);
    const ready = await raw(`${gw.url}/readyz`, { method: 'GET' });
    assert.equal(ready.status, 200);
    assert.equal(ready.json.servers.broken.state, 'failed');
    assert.equal(ready.json.servers.alpha.state, 'ready');
  });

  test('a stdio backend that dies fails its call cleanly, is restarted, and clients hear list_changed', async () => {
    const s = await rawSession(mcp);
    const before = (await call(s, 1, 'tools/call', { name: 'beta__pid', arguments: {} })).result.content[0]
      .text;
    const ctrl = new AbortController();
    const stream = await fetch(mcp, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': s },
      signal: ctrl.signal,
    });
    const crashed = await call(s, 2, 'tools/call', { name: 'beta__crash', arguments: {} });
    // The call reached the process before it died and is not marked safe to repeat: it may have run.
    assert.equal(crashed.error.data.code, 'GW_BACKEND_OUTCOME_UNKNOWN');
    let afterPid: string | undefined;
    for (let i = 0; i < 100 && !afterPid; i++) {
      const r = await call(s, 3 + i, 'tools/call', { name: 'beta__pid', arguments: {} });
      if (r.result) afterPid = r.result.content[0].text;
      else await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(afterPid && afterPid !== before, 'a new process answers');
    // The GET stream carried tools/list_changed for the outage and the recovery.
    const reader = stream.body!.getReader();
    let text = '';
    while (!text.includes('notifications/tools/list_changed')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    ctrl.abort();
    assert.ok(sseMessages(text).some((m) => m.method === 'notifications/tools/list_changed'));
  });

  test("a backend's list_changed reaches clients as list_changed on /mcp", async () => {
    const s = await rawSession(mcp);
    const ctrl = new AbortController();
    const stream = await fetch(mcp, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': s },
      signal: ctrl.signal,
    });
    await call(s, 1, 'tools/call', { name: 'alpha__change', arguments: {} });
    const reader = stream.body!.getReader();
    let text = '';
    while (!text.includes('list_changed')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    ctrl.abort();
    assert.ok(sseMessages(text).some((m) => m.method === 'notifications/tools/list_changed'));
  });
});
