/**
 * Every bad input the Foundation issue lists, through real sockets: each gets the spec's answer and the
 * gateway keeps serving.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, rawSession, startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

describe('bad input gets the answer the spec names', () => {
  let gw: RunningNode;
  let garbage: Server;
  let mcp: string;
  let sid: string;

  before(async () => {
    // A "backend" that answers every request with HTML.
    garbage = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>not mcp</html>'),
    );
    await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r));
    const port = (garbage.address() as { port: number }).port;
    gw = await startGateway({
      http: { maxBodyBytes: 10_000 },
      servers: [
        {
          name: 'scripted',
          transport: 'stdio',
          command: process.execPath,
          args: [SCRIPTED],
          env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['hello', 'broken_answer'], garbage: true }) },
        },
        { name: 'garbage', transport: 'streamable-http', url: `http://127.0.0.1:${port}/mcp` },
      ],
    });
    mcp = `${gw.url}/mcp`;
    sid = await rawSession(mcp);
  });
  after(async () => {
    await gw?.close();
    garbage?.close();
  });

  const session = () => ({ ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });

  test('malformed JSON: 400 with -32700', async () => {
    const r = await raw(mcp, { headers: session(), body: '{"jsonrpc": "2.0", "id": 1, "method": ' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, -32700);
  });

  test('invalid JSON-RPC: 400 with -32600', async () => {
    for (const body of [
      { hello: 'world' },
      { jsonrpc: '1.0', id: 1, method: 'ping' },
      { jsonrpc: '2.0', id: { x: 1 }, method: 'ping' },
      42,
    ]) {
      const r = await raw(mcp, { headers: session(), body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.code, -32600);
    }
  });

  test('unknown method: -32601', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: { jsonrpc: '2.0', id: 3, method: 'tools/frobnicate' },
    });
    assert.equal(r.json.error.code, -32601);
    assert.equal(r.json.id, 3);
  });

  test('unknown tool: -32602 naming the tool', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'nosuch__tool', arguments: {} } },
    });
    assert.equal(r.json.error.code, -32602);
    assert.match(r.json.error.message, /nosuch__tool/);
    assert.equal(r.json.error.data.code, 'GW_UNKNOWN_TOOL');
  });

  test('invalid cursor: -32602', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: { jsonrpc: '2.0', id: 5, method: 'tools/list', params: { cursor: 'not-a-cursor' } },
    });
    assert.equal(r.json.error.code, -32602);
    assert.equal(r.json.error.data.code, 'GW_INVALID_CURSOR');
  });

  test('oversized body: 413', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: {
        jsonrpc: '2.0',
        id: 6,
        method: 'tools/call',
        params: { name: 'scripted__hello', arguments: { blob: 'x'.repeat(20_000) } },
      },
    });
    assert.equal(r.status, 413);
    assert.equal(r.json.error.data.code, 'GW_BODY_TOO_LARGE');
  });

  test('missing session: 400; unknown session: 404', async () => {
    const missing = await raw(mcp, {
      headers: MCP_HEADERS,
      body: { jsonrpc: '2.0', id: 7, method: 'tools/list' },
    });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error.data.code, 'GW_SESSION_REQUIRED');
    const unknown = await raw(mcp, {
      headers: { ...MCP_HEADERS, 'mcp-session-id': 'no-such-session' },
      body: { jsonrpc: '2.0', id: 8, method: 'tools/list' },
    });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, -32001);
  });

  test('a session is bound to its endpoint: /mcp session on /servers/x/mcp is 404', async () => {
    const r = await raw(`${gw.url}/servers/scripted/mcp`, {
      headers: session(),
      body: { jsonrpc: '2.0', id: 9, method: 'tools/list' },
    });
    assert.equal(r.status, 404);
  });

  test('Accept without both types: 406; GET without text/event-stream: 406', async () => {
    const r = await raw(mcp, {
      headers: { ...session(), accept: 'application/json' },
      body: { jsonrpc: '2.0', id: 10, method: 'ping' },
    });
    assert.equal(r.status, 406);
    const g = await raw(mcp, {
      method: 'GET',
      headers: { 'mcp-session-id': sid, accept: 'application/json' },
    });
    assert.equal(g.status, 406);
  });

  test('non-JSON content type: 415', async () => {
    const r = await raw(mcp, {
      headers: { ...session(), 'content-type': 'text/plain' },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    assert.equal(r.status, 415);
  });

  test('unsupported method on the endpoint: 405 with Allow', async () => {
    const r = await raw(mcp, { method: 'PUT', headers: session(), body: '{}' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'GET, POST, DELETE');
  });

  test('foreign Origin or Host: 403 (DNS rebinding)', async () => {
    const o = await raw(mcp, {
      headers: { ...session(), origin: 'https://evil.example' },
      body: { jsonrpc: '2.0', id: 11, method: 'ping' },
    });
    assert.equal(o.status, 403);
    const ok = await raw(mcp, {
      headers: { ...session(), origin: 'http://localhost:6274' },
      body: { jsonrpc: '2.0', id: 12, method: 'ping' },
    });
    assert.equal(ok.status, 200);
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        mcp,
        { method: 'POST', headers: { ...session(), host: 'evil.example:80' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ jsonrpc: '2.0', id: 13, method: 'ping' }));
    });
    assert.equal(status, 403);
  });

  test('unsupported MCP-Protocol-Version: 400', async () => {
    const r = await raw(mcp, {
      headers: { ...session(), 'mcp-protocol-version': '1999-01-01' },
      body: { jsonrpc: '2.0', id: 14, method: 'ping' },
    });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /1999-01-01/);
  });

  test('initialize on an existing session: 400 with -32600', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: {
        jsonrpc: '2.0',
        id: 15,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      },
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, -32600);
  });

  test('initialize without a protocolVersion: -32602 and no session', async () => {
    const r = await raw(mcp, {
      headers: MCP_HEADERS,
      body: { jsonrpc: '2.0', id: 16, method: 'initialize', params: { capabilities: {} } },
    });
    assert.equal(r.json.error.code, -32602);
    assert.equal(r.headers.get('mcp-session-id'), null);
  });

  test('a second GET stream on one session: 409', async () => {
    const ctrl = new AbortController();
    const first = await fetch(mcp, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sid },
      signal: ctrl.signal,
    });
    assert.equal(first.status, 200);
    const second = await raw(mcp, {
      method: 'GET',
      headers: { accept: 'text/event-stream', 'mcp-session-id': sid },
    });
    assert.equal(second.status, 409);
    ctrl.abort();
  });

  test('unknown server endpoint: 404', async () => {
    const r = await raw(`${gw.url}/servers/nope/mcp`, {
      headers: MCP_HEADERS,
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {} },
      },
    });
    assert.equal(r.status, 404);
    assert.equal(r.json.error.data.code, 'GW_UNKNOWN_SERVER');
  });

  test('a backend that answers garbage gives a clean error, and a garbage stdout line is survived', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: {
        jsonrpc: '2.0',
        id: 17,
        method: 'tools/call',
        params: { name: 'garbage__anything', arguments: {} },
      },
    });
    assert.equal(r.status, 200);
    assert.equal(r.json.error.code, -32603);
    assert.match(r.json.error.data.code, /^GW_BACKEND_/);
    const ok = await raw(mcp, {
      headers: session(),
      body: {
        jsonrpc: '2.0',
        id: 18,
        method: 'tools/call',
        params: { name: 'scripted__hello', arguments: { a: 1 } },
      },
    });
    assert.deepEqual(JSON.parse(ok.json.result.content[0].text), { tool: 'hello', arguments: { a: 1 } });
  });

  test('a stdio backend whose answer is malformed gives a clean error at once, not a timeout', async () => {
    const started = Date.now();
    const r = await raw(mcp, {
      headers: session(),
      body: {
        jsonrpc: '2.0',
        id: 19,
        method: 'tools/call',
        params: { name: 'scripted__broken_answer', arguments: {} },
      },
    });
    assert.equal(r.json.error.code, -32603);
    assert.equal(r.json.error.data.code, 'GW_BACKEND_PROTOCOL_ERROR');
    assert.ok(Date.now() - started < 5000, 'answered long before the request timeout');
  });

  test('notifications and responses get 202 with no body', async () => {
    const r = await raw(mcp, {
      headers: session(),
      body: { jsonrpc: '2.0', method: 'notifications/roots/list_changed' },
    });
    assert.equal(r.status, 202);
    assert.equal(r.text, '');
    const resp = await raw(mcp, {
      headers: session(),
      body: { jsonrpc: '2.0', id: 'unknown-request', result: {} },
    });
    assert.equal(resp.status, 202);
  });

  test('DELETE ends the session; it is then unknown (404)', async () => {
    const s2 = await rawSession(mcp);
    const d = await raw(mcp, { method: 'DELETE', headers: { 'mcp-session-id': s2 } });
    assert.equal(d.status, 200);
    const after = await raw(mcp, {
      headers: { ...MCP_HEADERS, 'mcp-session-id': s2 },
      body: { jsonrpc: '2.0', id: 1, method: 'ping' },
    });
    assert.equal(after.status, 404);
  });

  test('the gateway is still healthy after all of it', async () => {
    const h = await raw(`${gw.url}/healthz`, { method: 'GET' });
    assert.equal(h.status, 200);
  });
});
