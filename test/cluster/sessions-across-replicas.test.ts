/**
 * One client session served by two gateway processes that share Redis, behind a round-robin balancer:
 * every request may land on either process, a dropped stream resumes on the other one, and killing a
 * process mid-session loses nothing (the client never re-initializes). Real Redis, real processes, the
 * official SDK client, an HTTP backend (server-everything over Streamable HTTP).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { MCP_HEADERS } from '../helpers/gateway.js';
import { freePort, ROOT, spawnUntil, startEverythingHttp, stopChild } from '../helpers/net.js';
import { startRoundRobinProxy, type RoundRobinProxy } from '../helpers/round-robin-proxy.js';
import { connectSdk } from '../helpers/sdk-clients.js';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

describe('one session across two gateway processes sharing Redis', { timeout: 90_000 }, () => {
  const prefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-replicas-'));
  let backend: ChildProcess | undefined;
  let backendUrl = '';
  const gateways: ChildProcess[] = [];
  const proxies: RoundRobinProxy[] = [];
  let redis: Redis;

  async function startReplica(extra: object = {}): Promise<{ url: string; child: ChildProcess }> {
    const port = await freePort();
    const file = join(dir, `gw${port}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        ...extra,
        role: 'single',
        listen: { host: '127.0.0.1', port },
        log: { level: 'info' },
        sessions: { store: 'redis' },
        redis: { url: REDIS_URL, keyPrefix: prefix },
        // Sessions are what these replicas share; the registry store is beside the point (and an
        // embedded one per process would only slow their start).
        store: { kind: 'memory' },
        servers: [
          { name: 'everything', transport: 'streamable-http', url: backendUrl },
          // stdio backends are per process: each replica runs its own.
          { name: 'scripted', transport: 'stdio', command: process.execPath, args: [SCRIPTED] },
        ],
      }),
    );
    const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
    gateways.push(child);
    return { url: `http://127.0.0.1:${port}`, child };
  }

  /** Two replicas behind a fresh round-robin balancer. */
  async function cluster(extra: object = {}): Promise<{ proxy: RoundRobinProxy; replicas: ChildProcess[] }> {
    const replicas = await Promise.all([startReplica(extra), startReplica(extra)]);
    const proxy = await startRoundRobinProxy(replicas.map((r) => r.url));
    proxies.push(proxy);
    return { proxy, replicas: replicas.map((r) => r.child) };
  }

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping().catch((err: unknown) => {
      throw new Error(`these tests need a real Redis at ${REDIS_URL} (set MCPGW_TEST_REDIS_URL): ${err}`);
    });
    const b = await startEverythingHttp('streamableHttp');
    backend = b.child;
    backendUrl = b.url;
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all(gateways.map((g) => stopChild(g)));
    await stopChild(backend);
    let cursor = '0';
    do {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = nextCursor;
    } while (cursor !== '0');
    await redis.quit();
    rmSync(dir, { recursive: true, force: true });
  });

  test('calls land on both processes, and the session survives killing one of them', async () => {
    const { proxy, replicas } = await cluster();
    const client = await connectSdk('v2', `${proxy.url}/mcp`);
    const echo = async (i: number) => {
      const r = await client.callTool({ name: 'everything__echo', arguments: { message: `m${i}` } });
      assert.equal(r.content[0].text, `Echo: m${i}`);
    };
    const { tools } = await client.listTools();
    assert.ok(tools.some((t: any) => t.name === 'everything__echo'));
    for (let i = 0; i < 6; i++) await echo(i);
    const posts = proxy.routed.filter((r) => r.method === 'POST' && r.rpcMethod === 'tools/call');
    assert.deepEqual(new Set(posts.map((r) => r.upstream)), new Set([0, 1]), 'both processes served calls');

    // Kill one process outright (no graceful shutdown): the other must carry on with the same session.
    const victim = replicas[0]!;
    const gone = new Promise((r) => victim.once('exit', r));
    victim.kill('SIGKILL');
    await gone;
    for (let i = 6; i < 12; i++) await echo(i);
    const { tools: again } = await client.listTools();
    assert.equal(again.length, tools.length);

    const initializes = proxy.routed.filter((r) => r.rpcMethod === 'initialize');
    assert.equal(initializes.length, 1, 'the client never re-initialized');
    const sids = new Set(proxy.routed.map((r) => r.sessionId).filter((s) => s !== undefined));
    assert.equal(sids.size, 1, 'one session id throughout');
    await client.close();
  });

  test('a stream dropped on one process resumes on the other: nothing lost, nothing twice', async () => {
    const { proxy } = await cluster();
    const mcp = `${proxy.url}/mcp`;
    const init = await fetch(mcp, {
      method: 'POST',
      headers: MCP_HEADERS,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'rr', version: '1' } },
      }),
    });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    const headers = { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    await (
      await fetch(mcp, {
        method: 'POST',
        headers,
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      })
    ).text();

    const res = await fetch(mcp, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: {
          name: 'everything__trigger-long-running-operation',
          arguments: { duration: 1.2, steps: 12 },
          _meta: { progressToken: 'p' },
        },
      }),
    });
    const servedBy = proxy.routed.at(-1)!.upstream;
    const first = await readEvents(res, (evs) => progress(evs).length >= 3);
    const lastId = first.at(-1)!.id!;

    // The resume goes to the other process (round robin), which never saw this request.
    const resumed = await fetch(mcp, {
      method: 'GET',
      headers: { ...headers, accept: 'text/event-stream', 'last-event-id': lastId },
    });
    assert.equal(resumed.status, 200);
    assert.notEqual(proxy.routed.at(-1)!.upstream, servedBy, 'resumed on the other process');
    const rest = await readEvents(resumed, () => false);
    assert.deepEqual([...progress(first), ...progress(rest)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const answers = rest.filter((e) => e.message?.id === 2);
    assert.equal(answers.length, 1, 'the response arrives once');
    assert.match(answers[0]!.message.result.content[0].text, /Long running operation completed/);
  });

  test('a sampling request raised on one process is answered through the other', async () => {
    const { proxy } = await cluster();
    let asked = 0;
    const client = await connectSdk('v2', `${proxy.url}/mcp`, {
      sampling: (p: any) => {
        asked++;
        return {
          role: 'assistant',
          content: { type: 'text', text: `sampled:${p.messages?.[0]?.content?.text ?? ''}` },
          model: 'test-model',
          stopReason: 'endTurn',
        };
      },
    });
    // Round robin sends the call and the client's answer to different processes at least once in a few tries.
    let crossed = 0;
    for (let i = 0; i < 4; i++) {
      const from = proxy.routed.length;
      const r = await client.callTool({
        name: 'everything__trigger-sampling-request',
        arguments: { prompt: `q${i}`, maxTokens: 10 },
      });
      assert.match(JSON.stringify(r.content), new RegExp(`sampled:[^"]*q${i}`));
      const mine = proxy.routed.slice(from).filter((x) => x.method === 'POST');
      const call = mine.find((x) => x.rpcMethod === 'tools/call');
      const answer = mine.find((x) => x.rpcMethod === undefined);
      if (call && answer && call.upstream !== answer.upstream) crossed++;
    }
    assert.equal(asked, 4);
    assert.ok(crossed > 0, 'at least one answer landed on the other process');
    await client.close();
  });

  test("a message for the client's GET stream reaches it on whichever process holds it", async () => {
    const { proxy } = await cluster();
    const mcp = `${proxy.url}/mcp`;
    const init = await fetch(mcp, {
      method: 'POST',
      headers: MCP_HEADERS,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'rr', version: '1' } },
      }),
    });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    const headers = { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    const post = (body: unknown) =>
      fetch(mcp, { method: 'POST', headers, body: JSON.stringify(body) }).then((r) => r.text());
    await post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const get = await fetch(mcp, { method: 'GET', headers: { ...headers, accept: 'text/event-stream' } });
    assert.equal(get.status, 200);
    const holder = proxy.routed.at(-1)!.upstream;
    // Strict round robin: the next request runs on the process that does not hold the GET stream, and
    // the stdio backend it changes is that process's own.
    await post({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'scripted__change', arguments: {} },
    });
    assert.notEqual(proxy.routed.at(-1)!.upstream, holder, 'the change ran on the other process');
    const events = await readEvents(get, (evs) =>
      evs.some((e) => e.message?.method === 'notifications/tools/list_changed'),
    );
    assert.ok(events.some((e) => e.message?.method === 'notifications/tools/list_changed'));
  });

  test('a cursor from one process pages on through the other (2025 sessions and 2026 requests)', async () => {
    const { proxy } = await cluster({ aggregate: { pageSize: 3 } });
    const mcp = `${proxy.url}/mcp`;
    const pages = async (list: (cursor?: string) => Promise<any>) => {
      const names: string[] = [];
      let cursor: string | undefined;
      let n = 0;
      do {
        const r = await list(cursor);
        assert.ok(r.tools, JSON.stringify(r));
        names.push(...r.tools.map((t: any) => t.name));
        cursor = r.nextCursor;
        n++;
      } while (cursor && n < 50);
      return { names, n };
    };
    // The SDK client follows nextCursor by itself: count the pages at the balancer.
    const listed = () => proxy.routed.filter((r) => r.rpcMethod === 'tools/list');
    const c25 = await connectSdk('v2', mcp);
    const old = await pages((cursor) => c25.listTools(cursor ? { cursor } : {}));
    assert.ok(listed().length > 2, `several pages: ${listed().length} for ${old.names.length} tools`);
    assert.equal(new Set(listed().map((r) => r.upstream)).size, 2, 'pages were served by both processes');
    assert.equal(new Set(old.names).size, old.names.length, 'no name twice');
    await c25.close();

    const before = listed().length;
    const c26 = new Client({ name: 'rr-2026', version: '1' }, {
      capabilities: {},
      versionNegotiation: { mode: { pin: '2026-07-28' } },
    } as any);
    await c26.connect(new StreamableHTTPClientTransport(new URL(mcp)));
    const modern = await pages((cursor) => c26.listTools(cursor ? { cursor } : {}));
    assert.ok(listed().length - before > 2, 'several 2026 pages');
    assert.deepEqual(modern.names, old.names, 'the same list, page by page, in either era');
    await c26.close();
  });
});

interface Ev {
  id?: string;
  message?: any;
}

const progress = (evs: Ev[]) =>
  evs.filter((e) => e.message?.method === 'notifications/progress').map((e) => e.message.params.progress);

/** Reads SSE events until `enough` says so (then drops the connection) or the server ends the stream. */
async function readEvents(res: Response, enough: (evs: Ev[]) => boolean): Promise<Ev[]> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const out: Ev[] = [];
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    buf += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev: Ev = {};
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('id:')) ev.id = line.slice(3).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (data) ev.message = JSON.parse(data);
      if (ev.id || ev.message) out.push(ev);
      if (enough(out)) {
        await reader.cancel();
        return out;
      }
    }
  }
}
