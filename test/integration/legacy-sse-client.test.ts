/**
 * Legacy HTTP+SSE clients (MCP 2024-11-05 transport) through mcpgw, over real sockets: the official v1
 * SDK's SSEClientTransport against `/sse` and `/servers/{name}/sse` with the reference "everything" server
 * behind, and every transport-level refusal over raw HTTP.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { RunningNode } from '../../cli/single.js';
import { raw, startGateway } from '../helpers/gateway.js';
import { EVERYTHING } from '../helpers/net.js';

const JSON_HEADERS = { 'content-type': 'application/json' };

async function connectLegacy(url: string): Promise<{ client: Client; sampled: string[] }> {
  const sampled: string[] = [];
  const client = new Client(
    { name: 'mcpgw-test-legacy', version: '1.0.0' },
    { capabilities: { sampling: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (r) => {
    const text = (r.params.messages[0]?.content as { text?: string } | undefined)?.text ?? '';
    sampled.push(text);
    return {
      role: 'assistant',
      content: { type: 'text', text: `sampled:${text}` },
      model: 'test-model',
      stopReason: 'endTurn',
    };
  });
  await client.connect(new SSEClientTransport(new URL(url)));
  return { client, sampled };
}

interface SseEvent {
  event: string;
  data: string;
}

/** A raw SSE stream: its status, and its events one at a time as they arrive. */
async function openStream(url: string, accept = 'text/event-stream') {
  const ctrl = new AbortController();
  const res = await fetch(url, { headers: { accept }, signal: ctrl.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  const next = async (): Promise<SseEvent> => {
    for (;;) {
      const end = buffered.indexOf('\n\n');
      if (end >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const lines = block.split('\n').filter((l) => !l.startsWith(':'));
        if (lines.length === 0) continue; // a keep-alive comment
        const field = (name: string) =>
          lines
            .filter((l) => l.startsWith(`${name}:`))
            .map((l) => l.slice(name.length + 1).trimStart())
            .join('\n');
        return { event: field('event') || 'message', data: field('data') };
      }
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      buffered += value;
    }
  };
  return {
    status: res.status,
    headers: res.headers,
    next,
    close: () => ctrl.abort(),
  };
}

/** Polls `check` until it holds (the server notices a closed stream asynchronously). */
async function eventually(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A POST with a Host header fetch will not let us set. */
async function statusWithHost(url: string, host: string, method: 'GET' | 'POST'): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = request(
      url,
      { method, headers: { host, accept: 'text/event-stream', ...JSON_HEADERS } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        res.destroy();
      },
    );
    req.on('error', reject);
    req.end(method === 'POST' ? JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) : undefined);
  });
}

describe('legacy HTTP+SSE clients (2024-11-05) through mcpgw', () => {
  let gw: RunningNode;

  before(async () => {
    gw = await startGateway({
      servers: [
        { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
      ],
    });
  });
  after(async () => gw?.close());

  describe('SDK v1 SSEClientTransport on /sse', () => {
    let client: Client;
    let sampled: string[];
    before(async () => {
      ({ client, sampled } = await connectLegacy(`${gw.url}/sse`));
    });
    after(async () => client?.close());

    test('lists namespaced tools', async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      assert.ok(names.includes('everything__echo'), names.join(','));
      assert.ok(names.includes('everything__trigger-sampling-request'), names.join(','));
    });

    test('calls a tool', async () => {
      const r = await client.callTool({ name: 'everything__echo', arguments: { message: 'hello legacy' } });
      assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: hello legacy' }]);
    });

    test('reads a resource', async () => {
      const { resources } = await client.listResources();
      assert.ok(resources.length > 0);
      const read = await client.readResource({ uri: resources[0]!.uri });
      assert.equal(read.contents[0]?.uri, resources[0]!.uri);
    });

    test('gets a prompt', async () => {
      const p = await client.getPrompt({
        name: 'everything__completable-prompt',
        arguments: { department: 'Sales', name: 'Eve' },
      });
      const content = p.messages[0]?.content;
      assert.ok(content && content.type === 'text');
      assert.match(content.text, /Eve to the head of the Sales team/);
    });

    test('delivers progress of a long-running tool on the stream', async () => {
      const progress: number[] = [];
      const r = await client.callTool(
        { name: 'everything__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
        undefined,
        { onprogress: (p) => progress.push(p.progress) },
      );
      assert.match(JSON.stringify(r.content), /Long running operation completed/);
      // The v1 SSE client handles notifications a microtask later than responses: when the last progress
      // and the result arrive in one read, it drops that progress (it does so against the everything server
      // directly too), so only the earlier steps are certain.
      assert.ok(progress.length >= 2, JSON.stringify(progress));
      assert.deepEqual(progress, [1, 2, 3].slice(0, progress.length));
    });

    test('relays a sampling request to the client and its answer to the backend', async () => {
      const r = await client.callTool({
        name: 'everything__trigger-sampling-request',
        arguments: { prompt: 'legacy-ping', maxTokens: 10 },
      });
      assert.ok(
        sampled.some((t) => t.includes('legacy-ping')),
        'the sampling request reached the client',
      );
      assert.match(JSON.stringify(r.content), /sampled:.*legacy-ping/, 'the answer reached the backend');
    });
  });

  describe('SDK v1 SSEClientTransport on /servers/everything/sse', () => {
    let client: Client;
    before(async () => {
      ({ client } = await connectLegacy(`${gw.url}/servers/everything/sse`));
    });
    after(async () => client?.close());

    test("sees the server's own names and identity", async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      assert.ok(names.includes('echo'), names.join(','));
      assert.ok(!names.some((n) => n.startsWith('everything__')));
      assert.notEqual(client.getServerVersion()?.name, 'mcpgw');
      const r = await client.callTool({ name: 'echo', arguments: { message: 'one server' } });
      assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: one server' }]);
    });
  });

  describe('the wire, over raw HTTP', () => {
    test('the first event names the POST URI; answers arrive as message events', async () => {
      const s = await openStream(`${gw.url}/servers/everything/sse`);
      assert.equal(s.status, 200);
      assert.match(s.headers.get('content-type') ?? '', /^text\/event-stream/);
      const endpoint = await s.next();
      assert.equal(endpoint.event, 'endpoint');
      assert.match(endpoint.data, /^\/servers\/everything\/message\?sessionId=[0-9a-f-]{36}$/);
      const post = await raw(`${gw.url}${endpoint.data}`, {
        headers: JSON_HEADERS,
        body: { jsonrpc: '2.0', id: 7, method: 'ping' },
      });
      assert.equal(post.status, 202);
      const answer = await s.next();
      assert.equal(answer.event, 'message');
      assert.deepEqual(JSON.parse(answer.data), { jsonrpc: '2.0', id: 7, result: {} });
      s.close();
    });

    test('GET without Accept: text/event-stream: 406', async () => {
      const r = await raw(`${gw.url}/sse`, { method: 'GET', headers: { accept: 'application/json' } });
      assert.equal(r.status, 406);
      assert.equal(r.json.error.data.code, 'GW_NOT_ACCEPTABLE_SSE');
    });

    test('an unknown server: 404', async () => {
      const r = await raw(`${gw.url}/servers/nope/sse`, {
        method: 'GET',
        headers: { accept: 'text/event-stream' },
      });
      assert.equal(r.status, 404);
      assert.equal(r.json.error.data.code, 'GW_UNKNOWN_SERVER');
    });

    test('POST without sessionId: 400; unknown sessionId: 404', async () => {
      const body = { jsonrpc: '2.0', id: 1, method: 'ping' };
      const missing = await raw(`${gw.url}/message`, { headers: JSON_HEADERS, body });
      assert.equal(missing.status, 400);
      assert.equal(missing.json.error.data.code, 'GW_SESSION_ID_REQUIRED');
      const unknown = await raw(`${gw.url}/message?sessionId=no-such-session`, {
        headers: JSON_HEADERS,
        body,
      });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.json.error.code, -32001);
    });

    describe('with an open session', () => {
      let s: Awaited<ReturnType<typeof openStream>>;
      let message: string;
      before(async () => {
        s = await openStream(`${gw.url}/sse`);
        message = `${gw.url}${(await s.next()).data}`;
      });
      after(() => s?.close());

      test('malformed JSON: 400 with -32700', async () => {
        const r = await raw(message, {
          headers: JSON_HEADERS,
          body: '{"jsonrpc": "2.0", "id": 1, "method": ',
        });
        assert.equal(r.status, 400);
        assert.equal(r.json.error.code, -32700);
      });

      test('not JSON-RPC: 400 with -32600', async () => {
        const r = await raw(message, { headers: JSON_HEADERS, body: { hello: 'world' } });
        assert.equal(r.status, 400);
        assert.equal(r.json.error.code, -32600);
      });

      test('wrong content type: 415', async () => {
        const r = await raw(message, {
          headers: { 'content-type': 'text/plain' },
          body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
        });
        assert.equal(r.status, 415);
      });

      test('the session is bound to its endpoint: /sse session on /servers/everything/message is 404', async () => {
        const sid = new URL(message).searchParams.get('sessionId');
        const r = await raw(`${gw.url}/servers/everything/message?sessionId=${sid}`, {
          headers: JSON_HEADERS,
          body: { jsonrpc: '2.0', id: 1, method: 'ping' },
        });
        assert.equal(r.status, 404);
      });
    });

    test('a Host that is not allowed: 403 on both the stream and the message endpoint', async () => {
      assert.equal(await statusWithHost(`${gw.url}/sse`, 'evil.example:80', 'GET'), 403);
      assert.equal(await statusWithHost(`${gw.url}/message?sessionId=x`, 'evil.example:80', 'POST'), 403);
      assert.equal(await statusWithHost(`${gw.url}/servers/everything/sse`, 'evil.example', 'GET'), 403);
      const foreignOrigin = await raw(`${gw.url}/message?sessionId=x`, {
        headers: { ...JSON_HEADERS, origin: 'https://evil.example' },
        body: { jsonrpc: '2.0', id: 1, method: 'ping' },
      });
      assert.equal(foreignOrigin.status, 403);
    });

    test('closing the stream ends the session: its sessionId is then unknown (404)', async () => {
      const s = await openStream(`${gw.url}/sse`);
      const message = `${gw.url}${(await s.next()).data}`;
      const ping = () =>
        raw(message, {
          headers: JSON_HEADERS,
          body: { jsonrpc: '2.0', method: 'notifications/initialized' },
        });
      assert.equal((await ping()).status, 202);
      s.close();
      await eventually(async () => (await ping()).status === 404, 'the session to end');
    });
  });

  test('gateway shutdown ends every open legacy stream', async () => {
    const gw2 = await startGateway({ servers: [] });
    const s = await openStream(`${gw2.url}/sse`);
    assert.equal((await s.next()).event, 'endpoint');
    await gw2.close();
    await assert.rejects(s.next());
  });
});
