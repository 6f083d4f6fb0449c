/**
 * Both protocol eras on the same endpoints, told apart per request: the official v2 client pinned to
 * 2026-07-28 (stateless: server/discover, an envelope on every request, no session) and 2025 clients
 * side by side, through the gateway to a 2025 backend; and every 2026 refusal at its status and code.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { RunningNode } from '../../cli/single.js';
import { raw, startGateway } from '../helpers/gateway.js';
import { EVERYTHING, ROOT } from '../helpers/net.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const V = '2026-07-28';
const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': V,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw-2026', version: '1' },
};

async function modernClient(url: string, mode: unknown = { pin: V }, capabilities: object = {}) {
  const c = new Client({ name: 'mcpgw-test-2026', version: '1.0.0' }, {
    capabilities,
    versionNegotiation: { mode },
  } as any);
  await c.connect(new StreamableHTTPClientTransport(new URL(url)));
  return c;
}

describe('the 2026-07-28 era beside the 2025 era', { timeout: 60_000 }, () => {
  let gw: RunningNode;
  let mcp: string;
  const log = join(mkdtempSync(join(tmpdir(), 'mcpgw-eras-')), 'stdin.log');
  const sent = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');

  /** A raw 2026 request with the headers a 2026 client sends (override any). */
  const modern = (method: string, params: object = {}, headers: Record<string, string> = {}) =>
    raw(mcp, {
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': V,
        'mcp-method': method,
        ...headers,
      },
      body: { jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { ...ENVELOPE } } },
    });

  before(async () => {
    gw = await startGateway({
      servers: [
        {
          name: 'everything',
          transport: 'stdio',
          command: process.execPath,
          args: [`${ROOT}dist/test/fixtures/tee-stdio.js`, log, process.execPath, EVERYTHING, 'stdio'],
        },
      ],
    });
    mcp = `${gw.url}/mcp`;
  });
  after(async () => gw?.close());

  test('a pinned 2026 client works on /mcp without a session: lists, calls, progress, reads, prompts', async () => {
    const c = await modernClient(mcp);
    assert.equal((c as any).getProtocolEra(), 'modern');
    const { tools } = await c.listTools();
    assert.ok(tools.some((t: any) => t.name === 'everything__echo'));
    const echo: any = await c.callTool({ name: 'everything__echo', arguments: { message: 'from 2026' } });
    assert.equal(echo.content[0].text, 'Echo: from 2026');
    const progress: number[] = [];
    const long: any = await c.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
      { onprogress: (p: any) => progress.push(p.progress) } as any,
    );
    assert.match(long.content[0].text, /Long running operation completed/);
    assert.deepEqual(progress, [1, 2, 3]);
    const { resources } = await c.listResources();
    assert.ok(resources.length > 0);
    const read: any = await c.readResource({ uri: resources[0]!.uri });
    assert.equal(read.contents[0].uri, resources[0]!.uri);
    const prompt: any = await c.getPrompt({ name: 'everything__simple-prompt' });
    assert.ok(prompt.messages.length > 0);
    await c.close();
  });

  test('a 2026 client on /servers/{name}/mcp sees the server its own names; an auto client picks 2026', async () => {
    const c = await modernClient(`${gw.url}/servers/everything/mcp`, 'auto');
    assert.equal((c as any).getProtocolEra(), 'modern');
    const { tools } = await c.listTools();
    assert.ok(tools.some((t: any) => t.name === 'echo'));
    await c.close();
  });

  test('2025 clients keep working on the same endpoint at the same time', async () => {
    const [c26, c25] = await Promise.all([modernClient(mcp), connectSdk('v1', mcp)]);
    const [a, b]: any[] = await Promise.all([
      c26.callTool({ name: 'everything__echo', arguments: { message: 'new' } }),
      c25.callTool({ name: 'everything__echo', arguments: { message: 'old' } }),
    ]);
    assert.equal(a.content[0].text, 'Echo: new');
    assert.equal(b.content[0].text, 'Echo: old');
    await Promise.all([c26.close(), c25.close()]);
  });

  test('2026 results carry resultType, serverInfo, and cache hints on lists', async () => {
    const d = await modern('server/discover');
    assert.equal(d.status, 200);
    assert.deepEqual(d.json.result.supportedVersions, [V]);
    assert.ok(d.json.result.capabilities.tools);
    assert.equal(d.json.result._meta['io.modelcontextprotocol/serverInfo'].name, 'mcpgw');
    const l = await modern('tools/list');
    assert.equal(l.json.result.resultType, 'complete');
    assert.equal(l.json.result.ttlMs, 0);
    assert.equal(l.json.result.cacheScope, 'private');
    assert.equal(l.headers.get('mcp-session-id'), null, 'no session in this era');
    const call = await modern(
      'tools/call',
      { name: 'everything__echo', arguments: { message: 'x' } },
      { 'mcp-name': 'everything__echo' },
    );
    assert.equal(call.json.result.resultType, 'complete');
    assert.equal(call.json.result.ttlMs, undefined, 'a call is not cacheable');
    const missing = await modern('resources/read', { uri: 'nowhere://x' }, { 'mcp-name': 'nowhere://x' });
    assert.equal(missing.json.error.code, -32602, '-32002 is gone in 2026-07-28');
  });

  test('every 2026 refusal has its status and code', async () => {
    const noCaps = await raw(mcp, {
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': V,
        'mcp-method': 'tools/list',
      },
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/list',
        params: { _meta: { 'io.modelcontextprotocol/protocolVersion': V } },
      },
    });
    assert.deepEqual([noCaps.status, noCaps.json.error.code], [400, -32602]);
    assert.deepEqual(noCaps.json.error.data.envelope.missing, ['io.modelcontextprotocol/clientCapabilities']);

    const future = await raw(mcp, {
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2099-01-01',
        'mcp-method': 'tools/list',
      },
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/list',
        params: { _meta: { ...ENVELOPE, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } },
      },
    });
    assert.deepEqual([future.status, future.json.error.code], [400, -32022]);
    assert.deepEqual(future.json.error.data.supported, [V]);
    assert.equal(future.json.error.data.requested, '2099-01-01');

    const wrongMethod = await modern('tools/list', {}, { 'mcp-method': 'prompts/list' });
    assert.deepEqual([wrongMethod.status, wrongMethod.json.error.code], [400, -32020]);
    assert.deepEqual(wrongMethod.json.error.data.mismatch, { header: 'prompts/list', body: 'tools/list' });

    const noVersionHeader = await modern('tools/list', {}, { 'mcp-protocol-version': '' });
    assert.deepEqual([noVersionHeader.status, noVersionHeader.json.error.code], [400, -32020]);

    const wrongName = await modern(
      'tools/call',
      { name: 'everything__echo', arguments: {} },
      { 'mcp-name': 'other' },
    );
    assert.deepEqual([wrongName.status, wrongName.json.error.code], [400, -32020]);
    const noName = await modern('tools/call', { name: 'everything__echo', arguments: {} });
    assert.deepEqual(noName.json.error.data.mismatch, { header: '(missing)', body: 'everything__echo' });
    // A name in the Base64 form is decoded before the comparison.
    const b64 = `=?base64?${Buffer.from('everything__echo').toString('base64')}?=`;
    const encoded = await modern(
      'tools/call',
      { name: 'everything__echo', arguments: { message: 'b' } },
      { 'mcp-name': b64 },
    );
    assert.equal(encoded.json.result.content[0].text, 'Echo: b');

    const ping = await modern('ping');
    assert.deepEqual([ping.status, ping.json.error.code], [404, -32601]);

    const headerOnly = await raw(mcp, {
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': V,
      },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} },
    });
    assert.deepEqual([headerOnly.status, headerOnly.json.error.code], [400, -32602]);

    const listen = await modern('subscriptions/listen', { notifications: 'everything' });
    assert.deepEqual([listen.status, listen.json.error.code], [200, -32602], 'a malformed filter, in-band');
  });

  test('closing the response stream cancels the call at the backend', async () => {
    const ctrl = new AbortController();
    const started = fetch(mcp, {
      method: 'POST',
      signal: ctrl.signal,
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': V,
        'mcp-method': 'tools/call',
        'mcp-name': 'everything__trigger-long-running-operation',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 9,
        method: 'tools/call',
        params: {
          name: 'everything__trigger-long-running-operation',
          arguments: { duration: 5, steps: 5 },
          _meta: { ...ENVELOPE },
        },
      }),
    }).catch(() => undefined);
    let backendId: unknown;
    for (let i = 0; i < 200 && backendId === undefined; i++) {
      const line = sent()
        .split('\n')
        .filter((l) => l.includes('"duration":5'))
        .at(-1);
      backendId = line ? JSON.parse(line).id : undefined;
      if (backendId === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(backendId !== undefined, 'the call reached the backend');
    ctrl.abort();
    await started;
    let cancelled = false;
    for (let i = 0; i < 100 && !cancelled; i++) {
      cancelled = sent()
        .split('\n')
        .filter((l) => l.includes('notifications/cancelled'))
        .some((l) => JSON.parse(l).params.requestId === backendId);
      if (!cancelled) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(cancelled, 'the backend was told to cancel its call');
  });

  test("a 2025 backend's sampling and elicitation reach a 2026 client as input_required rounds", async () => {
    let sampled = 0;
    let elicited = 0;
    const c = await modernClient(mcp, { pin: V }, { sampling: {}, elicitation: {} });
    c.setRequestHandler('sampling/createMessage' as any, async (req: any) => {
      sampled++;
      const text = req.params?.messages?.[0]?.content?.text ?? '';
      return {
        role: 'assistant',
        content: { type: 'text', text: `sampled:${text}` },
        model: 'm',
        stopReason: 'endTurn',
      } as any;
    });
    c.setRequestHandler('elicitation/create' as any, async () => {
      elicited++;
      return { action: 'accept', content: { name: 'Ada Lovelace', check: true } } as any;
    });
    const s: any = await c.callTool({
      name: 'everything__trigger-sampling-request',
      arguments: { prompt: 'two-eras', maxTokens: 5 },
    });
    assert.equal(sampled, 1);
    assert.match(JSON.stringify(s.content), /sampled:[^"]*two-eras/);
    const e: any = await c.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
    assert.equal(elicited, 1);
    assert.match(JSON.stringify(e.content), /Ada Lovelace/);
    await c.close();
  });

  test('the round on the wire: input_required with inputRequests and requestState; a bad state is refused', async () => {
    const call = (extra: object) =>
      raw(mcp, {
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': V,
          'mcp-method': 'tools/call',
          'mcp-name': 'everything__trigger-sampling-request',
        },
        body: {
          jsonrpc: '2.0',
          id: 3,
          method: 'tools/call',
          params: {
            name: 'everything__trigger-sampling-request',
            arguments: { prompt: 'raw', maxTokens: 5 },
            ...extra,
            _meta: { ...ENVELOPE, 'io.modelcontextprotocol/clientCapabilities': { sampling: {} } },
          },
        },
      });
    const first = await call({});
    assert.equal(first.json.result.resultType, 'input_required');
    const [key, ask] = Object.entries(first.json.result.inputRequests)[0] as [string, any];
    assert.equal(ask.method, 'sampling/createMessage');
    assert.equal(ask.id, undefined, 'embedded requests carry no id');
    const state = first.json.result.requestState;
    assert.equal(typeof state, 'string');
    const forged = await call({ requestState: `${state}x`, inputResponses: {} });
    assert.equal(forged.json.error.code, -32602);
    assert.equal(forged.json.error.data.reason, 'invalid_request_state');
    const done = await call({
      requestState: state,
      inputResponses: {
        [key]: {
          role: 'assistant',
          content: { type: 'text', text: 'raw answer' },
          model: 'm',
          stopReason: 'endTurn',
        },
      },
    });
    assert.equal(done.json.result.resultType, 'complete');
    assert.match(JSON.stringify(done.json.result.content), /raw answer/);
    const reused = await call({ requestState: state, inputResponses: {} });
    assert.equal(reused.json.error.data.reason, 'invalid_request_state', 'a state is good for one retry');
  });
});
