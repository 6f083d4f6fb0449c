/**
 * Logs: traffic with secrets in headers and tool arguments through a gateway that logs everything (level
 * trace) to a buffer; no secret may appear in any line, and request-scoped lines carry the session id,
 * the request id and the trace id.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { recorderHttp } from '../fixtures/trace-recorder.js';
import { MCP_HEADERS, raw, rawSession } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';

const SECRETS = {
  clientBearer: 'client-bearer-SECRET-1f3a9',
  apiKey: 'x-api-key-SECRET-77c2e',
  cookie: 'sid=cookie-SECRET-0b6d4',
  argPassword: 'arg-password-SECRET-a81e0',
  argFree: 'free-text-argument-SECRET-5c9d1',
  backendHeader: 'backend-header-SECRET-e4420',
  stdioEnv: 'stdio-env-SECRET-93b7a',
};

class Buffered extends Writable {
  readonly lines: string[] = [];
  private rest = '';
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    const text = this.rest + chunk.toString('utf8');
    const parts = text.split('\n');
    this.rest = parts.pop() ?? '';
    this.lines.push(...parts.filter((l) => l !== ''));
    done();
  }
}

describe('logs', () => {
  const out = new Buffered();
  let http: { url: string; server: Server };
  let gw: RunningNode;

  before(async () => {
    http = await recorderHttp();
    const config = validateConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: 'trace' },
        telemetry: { tracing: { enabled: true, exporter: 'none', sampleRatio: 1 } },
        servers: [
          {
            name: 'recstdio',
            transport: 'stdio',
            command: process.execPath,
            args: [`${ROOT}dist/test/fixtures/trace-recorder.js`],
            env: { API_TOKEN: SECRETS.stdioEnv },
          },
          {
            name: 'rechttp',
            transport: 'streamable-http',
            url: http.url,
            headers: { authorization: `Bearer ${SECRETS.backendHeader}` },
          },
        ],
      },
      'test',
      {},
    );
    gw = await startSingleNode(config, { log: createLogger('trace', out) });
  });
  after(async () => {
    await gw?.close();
    http?.server.close();
  });

  it('never writes a secret from headers, arguments or config', async () => {
    const secretHeaders = {
      authorization: `Bearer ${SECRETS.clientBearer}`,
      'x-api-key': SECRETS.apiKey,
      cookie: SECRETS.cookie,
    };
    const sid = await rawSession(`${gw.url}/mcp`);
    const args = { password: SECRETS.argPassword, note: SECRETS.argFree, nested: { token: SECRETS.argFree } };
    for (const name of ['rechttp__whoami', 'recstdio__whoami', 'nosuch__tool']) {
      const r = await raw(`${gw.url}/mcp`, {
        headers: { ...MCP_HEADERS, ...secretHeaders, 'mcp-session-id': sid },
        body: { jsonrpc: '2.0', id: name, method: 'tools/call', params: { name, arguments: args } },
      });
      assert.equal(r.status, 200);
    }
    // Refused requests are logged too, where they are logged at all.
    await raw(`${gw.url}/mcp`, { headers: { ...MCP_HEADERS, ...secretHeaders }, body: '{not json' });
    await raw(`${gw.url}/mcp`, {
      headers: { ...MCP_HEADERS, ...secretHeaders, 'mcp-session-id': 'unknown' },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', arguments: args } },
    });
    await raw(`${gw.url}/mcp`, {
      method: 'DELETE',
      headers: { ...secretHeaders, 'mcp-session-id': sid },
    });

    assert.ok(out.lines.length > 5, `the gateway logged (${out.lines.length} lines)`);
    for (const line of out.lines) {
      JSON.parse(line); // every line is JSON
      for (const [what, secret] of Object.entries(SECRETS))
        assert.ok(!line.includes(secret), `${what} leaked into a log line: ${line}`);
    }
  });

  it('puts the session id, request id and trace id on request-scoped lines', () => {
    const access = out.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    assert.ok(access.length >= 3, 'an access line per request at debug level');
    for (const l of access) {
      assert.match(l.sessionId, /^[0-9a-f-]{36}$/);
      assert.ok(l.requestId !== undefined);
      assert.match(l.traceId, /^[0-9a-f]{32}$/);
      assert.equal(l.arguments, undefined);
    }
    const unknown = access.find((l) => l.tool === 'nosuch__tool');
    assert.equal(unknown?.code, 'GW_UNKNOWN_TOOL');
    assert.equal(unknown?.outcome, 'error');
  });

  it('redacts credentials wherever a module logs them', () => {
    const buf = new Buffered();
    const log = createLogger('info', buf);
    log.info(
      {
        headers: { authorization: 'Bearer a1', cookie: 'c1', 'set-cookie': 's1', 'x-api-key': 'k1' },
        req: { headers: { authorization: 'Bearer a2', 'proxy-authorization': 'p2' } },
        oauth: { clientSecret: 'cs3', refreshToken: 'rt3', accessToken: 'at3' },
        user: { password: 'pw4', profile: { secret: 'se4', token: 'to4' } },
        params: { arguments: { anything: 'ar5' } },
        clientSecret: 'cs6',
      },
      'credentials everywhere',
    );
    const line = buf.lines[0]!;
    for (const s of [
      'a1',
      'c1',
      's1',
      'k1',
      'a2',
      'p2',
      'cs3',
      'rt3',
      'at3',
      'pw4',
      'se4',
      'to4',
      'ar5',
      'cs6',
    ])
      assert.ok(!line.includes(`"${s}"`), `${s} is redacted: ${line}`);
    assert.match(line, /\[redacted\]/);
  });
});
