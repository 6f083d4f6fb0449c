/**
 * The HTTP hardening around authentication: Host-header routing (one host name per server, tenancy
 * still applying), CORS for configured origins only (preflights, exposed headers, readable 401s), the
 * header size limit, and legacy SSE sessions bound to their principal.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { generateApiKey } from '../../edge/auth/api-key.js';
import { MCP_HEADERS, startGateway } from '../helpers/gateway.js';
import { secureServer } from '../helpers/auth.js';

const PEPPER = randomBytes(24).toString('base64url');
const alice = generateApiKey(PEPPER);
const bob = generateApiKey(PEPPER);
const APP = 'https://app.example.test';
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'http', version: '1' } },
};

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** node:http, because fetch does not let a caller choose the Host header. */
function send(
  url: string,
  o: { method?: string; headers?: Record<string, string>; body?: unknown; untilFirstEvent?: boolean },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method ?? 'POST', headers: o.headers ?? {} }, (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
        // An SSE stream stays open: its first event is all a test needs.
        if (o.untilFirstEvent && text.includes('\n\n')) res.destroy();
      });
      const done = () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      };
      res.on('end', done);
      res.on('close', done);
    });
    req.on('error', reject);
    req.end(o.body === undefined ? undefined : JSON.stringify(o.body));
  });
}

describe('HTTP hardening', () => {
  let gw: RunningNode;
  const key = (k: { key: string }) => ({ 'x-api-key': k.key });

  before(async () => {
    gw = await startGateway({
      auth: {
        mode: 'api-key',
        apiKeys: {
          pepper: PEPPER,
          keys: [
            { id: alice.id, hash: alice.hash, owner: 'alice', tenant: 'acme' },
            { id: bob.id, hash: bob.hash, owner: 'bob', tenant: 'acme' },
          ],
        },
      },
      http: {
        maxHeaderBytes: 4096,
        cors: { origins: [APP], maxAgeSec: 120 },
        hostRouting: { pattern: '{service}-mcp.example.test' },
      },
      servers: [secureServer('files'), secureServer('globex-db', { tenant: 'globex' })],
    });
  });
  after(async () => gw?.close());

  test('Host-header routing: {service}-mcp.example.test/mcp is /servers/{service}/mcp', async () => {
    const r = await send(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...key(alice), host: 'files-mcp.example.test' },
      body: INIT,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result.serverInfo.name, 'files', 'the one server, under its own identity');
    const sid = r.headers['mcp-session-id'] as string;
    const list = await send(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...key(alice), host: 'FILES-mcp.example.test:443', 'mcp-session-id': sid },
      body: { jsonrpc: '2.0', id: 2, method: 'tools/list' },
    });
    assert.ok(
      list.json.result.tools.some((t: any) => t.name === 'echo'),
      'backend names, no prefix',
    );
  });

  test('a routed host of an unknown server or another tenant is a 404; a foreign host is a 403', async () => {
    for (const host of ['nowhere-mcp.example.test', 'globex-db-mcp.example.test']) {
      const r = await send(`${gw.url}/mcp`, { headers: { ...MCP_HEADERS, ...key(alice), host }, body: INIT });
      assert.equal(r.status, 404, host);
      assert.equal(r.json.error.data.code, 'GW_UNKNOWN_SERVER');
    }
    const foreign = await send(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...key(alice), host: 'files-mcp.evil.test' },
      body: INIT,
    });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.json.error.data.code, 'GW_FORBIDDEN_HOST');
  });

  test('CORS: a preflight from a configured origin is answered; others are refused', async () => {
    const pre = await send(`${gw.url}/mcp`, {
      method: 'OPTIONS',
      headers: {
        origin: APP,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, mcp-session-id, x-evil',
      },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], APP);
    assert.equal(pre.headers['access-control-allow-methods'], 'GET, POST, DELETE, OPTIONS');
    assert.equal(pre.headers['access-control-allow-headers'], 'authorization, content-type, mcp-session-id');
    assert.equal(pre.headers['access-control-max-age'], '120');
    assert.equal(pre.headers.vary, 'Origin');
    const evil = await send(`${gw.url}/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.test', 'access-control-request-method': 'POST' },
    });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
  });

  test('CORS: responses to the origin expose the session id and the auth challenge, 401s included', async () => {
    const ok = await send(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...key(alice), origin: APP },
      body: INIT,
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], APP);
    assert.match(String(ok.headers['access-control-expose-headers']), /Mcp-Session-Id.*WWW-Authenticate/);
    const refused = await send(`${gw.url}/mcp`, { headers: { ...MCP_HEADERS, origin: APP }, body: INIT });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['access-control-allow-origin'], APP);
    assert.ok(refused.headers['www-authenticate']);
    const other = await send(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...key(alice), origin: 'https://evil.test' },
      body: INIT,
    });
    assert.equal(other.status, 403);
    assert.equal(other.json.error.data.code, 'GW_FORBIDDEN_ORIGIN');
  });

  test('headers beyond http.maxHeaderBytes: 431 with the gateway error', async () => {
    const r = await send(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...key(alice), 'x-padding': 'a'.repeat(8192) },
      body: INIT,
    });
    assert.equal(r.status, 431);
    assert.equal(r.json.error.data.code, 'GW_HEADERS_TOO_LARGE');
  });

  test('a legacy SSE session is bound to its principal: another caller posting to it gets 404', async () => {
    // The stream stays open while the others post: the session lives as long as it does.
    const stream = await new Promise<{ endpoint: string; close(): void }>((resolve, reject) => {
      const req = request(
        `${gw.url}/sse`,
        { headers: { accept: 'text/event-stream', ...key(alice) } },
        (res) => {
          assert.equal(res.statusCode, 200);
          let text = '';
          res.on('data', (d) => {
            text += d;
            const m = /data: (\S+)/.exec(text);
            if (m) resolve({ endpoint: new URL(m[1]!, gw.url).href, close: () => res.destroy() });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
    try {
      const post = (headers: Record<string, string>) =>
        send(stream.endpoint, { headers: { 'content-type': 'application/json', ...headers }, body: INIT });
      const asBob = await post(key(bob));
      assert.equal(asBob.status, 404);
      assert.equal(asBob.json.error.data.code, 'GW_SESSION_NOT_FOUND');
      assert.equal((await post({})).status, 401);
      assert.equal((await post(key(alice))).status, 202, 'its owner still uses it');
    } finally {
      stream.close();
    }
  });
});
