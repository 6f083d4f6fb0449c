/**
 * The three upstream transports against the real `@modelcontextprotocol/server-everything` (stdio,
 * Streamable HTTP, legacy HTTP+SSE), with the initialize handshake done by hand, plus their failure
 * paths against fixtures: a scripted Streamable HTTP server (resumption, GET stream, HTTP errors,
 * session loss), closed ports, and misbehaving stdio processes.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { LegacySseTransport } from '../../core/backends/sse.js';
import { ProcessExitError, StdioTransport } from '../../core/backends/stdio.js';
import { StreamableHttpTransport } from '../../core/backends/streamable-http.js';
import type { UpstreamMessageContext, UpstreamTransport } from '../../core/backends/transport.js';
import type { JsonObject, JsonRpcId, JsonRpcMessage } from '../../shared/mcp/jsonrpc.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EVERYTHING = `${ROOT}node_modules/@modelcontextprotocol/server-everything/dist/index.js`;
const MISBEHAVING = fileURLToPath(new URL('../fixtures/stdio-misbehaving.js', import.meta.url));
const CLIENT_INFO = { name: 'mcpgw-test', version: '0.0.0' };

// ---------------------------------------------------------------------------------------------------
// Helpers

interface LogLine {
  level: string;
  obj: Record<string, unknown>;
  msg?: string;
}

function collectingLog() {
  const lines: LogLine[] = [];
  const listeners = new Set<() => void>();
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
    for (const l of listeners) l();
  };
  return {
    lines,
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    debug: at('debug'),
    /** Resolves once a logged line satisfies `pred`. */
    until(pred: (l: LogLine) => boolean, ms = 10_000): Promise<LogLine> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find(pred);
          if (!hit) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error('timed out waiting for a log line'));
        }, ms);
        listeners.add(check);
        check();
      });
    },
  };
}

interface Received {
  msg: JsonRpcMessage & { id?: JsonRpcId; method?: string; result?: any; error?: any; params?: any };
  ctx: UpstreamMessageContext;
}

/** Records what a transport reports and lets a test await it; sends requests with fresh ids. */
class Peer {
  readonly received: Received[] = [];
  readonly errors: Error[] = [];
  readonly closes: (Error | undefined)[] = [];
  private nextId = 1;
  private readonly waiters = new Set<() => void>();

  constructor(readonly t: UpstreamTransport) {
    t.onmessage = (msg, ctx) => {
      this.received.push({ msg: msg as Received['msg'], ctx });
      this.wake();
    };
    t.onerror = (e) => {
      this.errors.push(e);
      this.wake();
    };
    t.onclose = (r) => {
      this.closes.push(r);
      this.wake();
    };
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  until<T>(probe: () => T | undefined, what: string, ms = 15_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = probe();
        if (v === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(v);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  responseTo(id: JsonRpcId): Received | undefined {
    return this.received.find((r) => r.msg.method === undefined && r.msg.id === id);
  }

  async request(method: string, params?: JsonObject, ms?: number): Promise<Received> {
    const id = this.nextId++;
    await this.t.send(
      params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params },
    );
    return this.until(() => this.responseTo(id), `the response to ${method} (${id})`, ms);
  }

  peekId(): number {
    return this.nextId;
  }

  /** initialize, setProtocolVersion, notifications/initialized. */
  async handshake(protocolVersion: string): Promise<JsonObject> {
    const r = await this.request('initialize', {
      protocolVersion,
      capabilities: {},
      clientInfo: CLIENT_INFO,
    });
    assert.equal(r.msg.error, undefined, `initialize failed: ${JSON.stringify(r.msg.error)}`);
    assert.equal(r.msg.result.protocolVersion, protocolVersion);
    this.t.setProtocolVersion(r.msg.result.protocolVersion);
    await this.t.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    return r.msg.result;
  }
}

/** A port nothing listens on: bind port 0, note it, close. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts server-everything in an HTTP mode on a free port; resolves once it says it listens. */
async function startEverything(
  mode: 'streamableHttp' | 'sse',
): Promise<{ base: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, [EVERYTHING, mode], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`everything ${mode} did not start: ${seen}`)), 20_000);
    const onData = (b: Buffer) => {
      seen += b.toString();
      if (/listening on port|running on port/i.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`everything ${mode} exited with ${code}: ${seen}`));
    });
  });
  return { base: `http://127.0.0.1:${port}`, child };
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The parts of a session every transport must carry: list, echo (non-ASCII), progress. */
async function exerciseEverything(peer: Peer): Promise<void> {
  const list = await peer.request('tools/list', {});
  const names = (list.msg.result.tools as { name: string }[]).map((t) => t.name);
  assert.ok(names.includes('echo'), `echo is listed: ${names.join(', ')}`);
  assert.ok(names.includes('trigger-long-running-operation'));

  const echo = await peer.request('tools/call', { name: 'echo', arguments: { message: 'hi ünïcødé ✓' } });
  assert.equal(echo.msg.result.content[0].text, 'Echo: hi ünïcødé ✓');
}

// ---------------------------------------------------------------------------------------------------
// stdio

describe('StdioTransport', () => {
  const open: StdioTransport[] = [];
  after(async () => {
    await Promise.all(open.map((t) => t.close()));
  });
  const make = (o: Partial<ConstructorParameters<typeof StdioTransport>[0]> & { args: string[] }) => {
    const log = collectingLog();
    const t = new StdioTransport({ command: process.execPath, log, serverName: 'fixture', ...o });
    open.push(t);
    return { t, log, peer: new Peer(t) };
  };

  test('server-everything over stdio: handshake, tools/list, echo, progress', async () => {
    const { t, peer, log } = make({ args: [EVERYTHING, 'stdio'], serverName: 'everything' });
    await t.start();
    assert.equal(t.sessionId, undefined);
    await peer.handshake('2025-11-25');
    await exerciseEverything(peer);

    const id = peer.peekId();
    const op = await peer.request('tools/call', {
      name: 'trigger-long-running-operation',
      arguments: { duration: 0.2, steps: 2 },
      _meta: { progressToken: 'tok-stdio' },
    });
    assert.match(op.msg.result.content[0].text, /Long running operation completed/);
    const progress = peer.received.filter((r) => r.msg.method === 'notifications/progress');
    assert.deepEqual(
      progress.map((p) => p.msg.params.progress),
      [1, 2],
    );
    assert.ok(progress.every((p) => p.msg.params.progressToken === 'tok-stdio'));
    assert.ok(
      peer.received.findIndex((r) => r === progress[1]) < peer.received.indexOf(peer.responseTo(id)!),
    );

    // stderr is logging tagged with the server name, never an error
    const stderr = await log.until((l) => l.obj.server === 'everything' && typeof l.obj.stderr === 'string');
    assert.equal(stderr.level, 'info');
    assert.deepEqual(peer.errors, []);

    await t.close();
    assert.equal(peer.closes.length, 1);
    assert.equal(peer.closes[0], undefined);
  });

  test('a command that does not exist: start() rejects clearly, no onclose', async () => {
    const { t, peer } = make({ command: '/nonexistent/mcp-server', args: [] });
    await assert.rejects(t.start(), /cannot start \/nonexistent\/mcp-server: .*ENOENT/);
    await t.close();
    assert.deepEqual(peer.closes, []);
  });

  test('garbage lines go to onerror and the log; split and multi-message chunks are reassembled', async () => {
    const { t, peer, log } = make({ args: [MISBEHAVING, 'garbage'] });
    await t.start();
    const r = await peer.request('ping');
    assert.deepEqual(r.msg.result, { text: 'héllo ✓ wörld' });
    const note = peer.received.find((x) => x.msg.method === 'notifications/test');
    assert.ok(note, 'the notification that shared a chunk with half the response is delivered');
    assert.deepEqual(r.ctx, {});
    assert.equal(peer.errors.length, 2, peer.errors.map((e) => e.message).join('; '));
    assert.match(peer.errors[0]!.message, /not JSON: this is not json/);
    assert.match(peer.errors[1]!.message, /not a JSON-RPC message/);
    assert.equal(log.lines.filter((l) => l.level === 'warn' && l.obj.server === 'fixture').length, 2);
    assert.deepEqual(peer.closes, []);
  });

  test('a child that exits: onclose once with the exit code; later sends neither throw nor hang', async () => {
    const { t, peer } = make({ args: [MISBEHAVING, 'exit'] });
    await t.start();
    await peer.until(() => (peer.closes.length ? true : undefined), 'onclose');
    const reason = peer.closes[0];
    assert.ok(reason instanceof ProcessExitError);
    assert.equal(reason.exitCode, 3);
    assert.match(reason.message, /exited with code 3/);
    assert.ok(
      peer.received.some((r) => r.msg.method === 'notifications/last-words'),
      'what it wrote before exiting is delivered',
    );
    // A request to the dead process gets an error answer; a notification goes to onerror.
    const res = await peer.request('tools/list');
    assert.equal(res.msg.error.code, -32603);
    assert.equal(res.msg.error.data.code, 'GW_BACKEND_UNAVAILABLE');
    await t.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    assert.match(peer.errors.at(-1)!.message, /not running/);
    await t.close();
    assert.equal(peer.closes.length, 1, 'onclose was called exactly once');
  });

  test('a child that stops reading stdin: EPIPE is reported, never thrown, and ends the channel', async () => {
    const { t, peer, log } = make({ args: [MISBEHAVING, 'deaf'], shutdownGraceMs: 200 });
    await t.start();
    const pid = t.pid!;
    await log.until((l) => l.obj.stderr === 'deaf ready');
    await t.send({ jsonrpc: '2.0', method: 'notifications/big', params: { pad: 'x'.repeat(256 * 1024) } });
    await peer.until(() => (peer.closes.length ? true : undefined), 'onclose');
    assert.match(peer.errors[0]?.message ?? '', /stopped reading its stdin \(write EPIPE\)/);
    assert.match(peer.closes[0]?.message ?? '', /EPIPE/);
    assert.ok(!alive(pid), 'the deaf process was stopped');
    const r = await peer.request('ping');
    assert.equal(r.msg.error.data.code, 'GW_BACKEND_UNAVAILABLE');
    await t.close();
    assert.equal(peer.closes.length, 1);
  });

  test('the environment is minimal plus configured: no gateway secrets leak', async () => {
    process.env.MCPGW_TEST_SECRET = 'do-not-leak';
    try {
      const { t, peer } = make({
        args: [MISBEHAVING, 'env'],
        env: { FIXTURE_VAR: 'set', HOME: '/tmp/home' },
      });
      await t.start();
      const env = await peer.until(
        () => peer.received.find((r) => r.msg.method === 'notifications/env')?.msg.params,
        'the env notification',
      );
      assert.equal(env.FIXTURE_VAR, 'set');
      assert.equal(env.HOME, '/tmp/home', 'configured values win over inherited ones');
      assert.equal(env.PATH, process.env.PATH);
      assert.equal(env.MCPGW_TEST_SECRET, undefined);
      await t.close();
    } finally {
      delete process.env.MCPGW_TEST_SECRET;
    }
  });

  test('close() on a child that ignores stdin EOF and SIGTERM: SIGKILL within the grace periods', async () => {
    const grace = 300;
    const { t, peer, log } = make({ args: [MISBEHAVING, 'stubborn'], shutdownGraceMs: grace });
    await t.start();
    const pid = t.pid!;
    await log.until((l) => l.obj.stderr === 'stubborn ready'); // its SIGTERM handler is installed
    const started = Date.now();
    await t.close();
    const took = Date.now() - started;
    assert.ok(!alive(pid), 'the process is gone when close() resolves');
    assert.ok(took >= 2 * grace - 20, `waited after stdin EOF and after SIGTERM (${took} ms)`);
    assert.ok(took < 2 * grace + 1500, `killed promptly after the grace periods (${took} ms)`);
    const stderr = log.lines.map((l) => l.obj.stderr);
    assert.ok(stderr.includes('ignoring SIGTERM'), 'SIGTERM came before SIGKILL');
    assert.deepEqual(peer.closes, [undefined]);
    await t.close(); // idempotent
    assert.equal(peer.closes.length, 1);
  });
});

// ---------------------------------------------------------------------------------------------------
// Streamable HTTP against server-everything

describe('StreamableHttpTransport against server-everything', () => {
  let everything: { base: string; child: ChildProcess } | undefined;
  const open: UpstreamTransport[] = [];
  before(async () => {
    everything = await startEverything('streamableHttp');
  });
  after(async () => {
    await Promise.all(open.map((t) => t.close()));
    await stopChild(everything?.child);
  });

  test('handshake, tools/list, echo, and progress related to the request that caused it', async () => {
    const t = new StreamableHttpTransport({ url: `${everything!.base}/mcp`, log: collectingLog() });
    open.push(t);
    const peer = new Peer(t);
    await t.start();
    assert.equal(t.sessionId, undefined);
    await peer.handshake('2025-11-25');
    assert.match(t.sessionId ?? '', /^[\x21-\x7e]+$/, 'the session id was captured from initialize');
    await exerciseEverything(peer);

    const id = peer.peekId();
    const op = await peer.request('tools/call', {
      name: 'trigger-long-running-operation',
      arguments: { duration: 0.2, steps: 2 },
      _meta: { progressToken: 'tok-http' },
    });
    assert.match(op.msg.result.content[0].text, /Long running operation completed/);
    assert.deepEqual(op.ctx, { relatedRequestId: id });
    const progress = peer.received.filter((r) => r.msg.method === 'notifications/progress');
    assert.deepEqual(
      progress.map((p) => [p.msg.params.progress, p.msg.params.progressToken, p.ctx.relatedRequestId]),
      [
        [1, 'tok-http', id],
        [2, 'tok-http', id],
      ],
    );
    assert.deepEqual(peer.errors, [], 'priming events and keep-alives are not errors');

    const sid = t.sessionId!;
    await t.close();
    assert.deepEqual(peer.closes, [undefined]);
    // The session was DELETEd: the server no longer knows it.
    const res = await fetch(`${everything!.base}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sid,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    await res.text();
    assert.equal(res.status, 400);
  });

  test('a request after close() gets an error answer at once', async () => {
    const t = new StreamableHttpTransport({ url: `${everything!.base}/mcp`, log: collectingLog() });
    const peer = new Peer(t);
    await t.close();
    const r = await peer.request('ping', undefined, 1000);
    assert.equal(r.msg.error.data.code, 'GW_BACKEND_UNAVAILABLE');
  });
});

// ---------------------------------------------------------------------------------------------------
// Streamable HTTP against a scripted server: resumption, GET stream, errors, session loss

interface Seen {
  method: string;
  rpc?: string;
  headers: IncomingMessage['headers'];
}

function scriptedStreamableServer(opts: { getStream: 'events' | '405' }) {
  const seen: Seen[] = [];
  const hanging = new Set<ServerResponse>();
  let getCount = 0;
  const sse = (res: ServerResponse, body: string) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 'sess-1' });
    res.end(body);
  };
  const ev = (id: string, msg: unknown) => `id: ${id}\nevent: message\ndata: ${JSON.stringify(msg)}\n\n`;
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const msg = text ? (JSON.parse(text) as { id?: JsonRpcId; method?: string; params?: any }) : undefined;
      seen.push({ method: req.method!, rpc: msg?.method, headers: req.headers });
      if (req.method === 'DELETE') return void res.writeHead(200).end();
      if (req.method === 'GET') {
        const last = req.headers['last-event-id'];
        if (typeof last === 'string' && last.startsWith('p')) {
          // resumption of the POST stream of `resume/me` (request id 2)
          return sse(res, ev('p3', { jsonrpc: '2.0', id: 2, result: { resumed: true } }));
        }
        if (opts.getStream === '405') return void res.writeHead(405).end();
        getCount++;
        if (getCount === 1) {
          // the first GET stream carries one message, then drops (the client reconnects quickly)
          return sse(res, `retry: 20\n\n${ev('g1', { jsonrpc: '2.0', method: 'notifications/one' })}`);
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(ev(`g${getCount}`, { jsonrpc: '2.0', method: 'notifications/two', params: { last } }));
        hanging.add(res);
        return;
      }
      const id = msg?.id;
      switch (msg?.method) {
        case 'initialize':
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'sess-1' });
          return void res.end(
            JSON.stringify({
              jsonrpc: '2.0',
              id,
              result: {
                protocolVersion: msg.params.protocolVersion,
                capabilities: {},
                serverInfo: { name: 'scripted', version: '1' },
              },
            }),
          );
        case 'resume/me':
          // priming event (id, retry, empty data), a related notification, then the stream ends early
          return sse(
            res,
            `id: p1\nretry: 10\ndata: \n\n${ev('p2', { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } })}`,
          );
        case 'json/garbage':
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end('<html>not json</html>');
        case 'fail/500':
          res.writeHead(500, { 'content-type': 'application/json' });
          return void res.end(
            JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'boom' } }),
          );
        case 'slow':
          hanging.add(res);
          return;
        case 'notifications/fail':
          return void res.writeHead(500).end();
        case 'session/gone':
          return void res.writeHead(404, { 'content-type': 'application/json' }).end(
            JSON.stringify({
              jsonrpc: '2.0',
              id: null,
              error: { code: -32001, message: 'Session not found' },
            }),
          );
        default:
          if (id === undefined) return void res.writeHead(202).end();
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ jsonrpc: '2.0', id, result: { method: msg?.method } }));
      }
    });
  });
  return {
    seen,
    async listen(): Promise<string> {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const addr = server.address();
      return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/mcp`;
    },
    async close(): Promise<void> {
      for (const r of hanging) r.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('StreamableHttpTransport against a scripted server', () => {
  const servers: { close(): Promise<void> }[] = [];
  const open: UpstreamTransport[] = [];
  after(async () => {
    await Promise.all(open.map((t) => t.close()));
    await Promise.all(servers.map((s) => s.close()));
  });

  test('headers, resumption of a POST stream, the GET stream and its reconnection, HTTP errors', async () => {
    const srv = scriptedStreamableServer({ getStream: 'events' });
    servers.push(srv);
    const url = await srv.listen();
    const t = new StreamableHttpTransport({
      url,
      headers: { 'X-Api-Key': 'k-123' },
      log: collectingLog(),
      requestTimeoutMs: 500,
    });
    open.push(t);
    const peer = new Peer(t);
    await peer.handshake('2025-11-25'); // id 1
    assert.equal(t.sessionId, 'sess-1');

    // id 2: the POST stream primes, relates a notification, ends early; a GET with Last-Event-ID resumes it
    const resumed = await peer.request('resume/me', {});
    assert.deepEqual(resumed.msg.result, { resumed: true });
    assert.deepEqual(resumed.ctx, { relatedRequestId: 2 });
    const prog = peer.received.find((r) => r.msg.method === 'notifications/progress');
    assert.deepEqual(prog?.ctx, { relatedRequestId: 2 });
    const resumeGet = srv.seen.find((s) => s.method === 'GET' && s.headers['last-event-id'] === 'p2');
    assert.ok(resumeGet, 'resumed from the last event id of the POST stream');

    // The standalone GET stream: opened after initialized, messages unrelated; reconnected with Last-Event-ID
    const two = await peer.until(
      () => peer.received.find((r) => r.msg.method === 'notifications/two'),
      'a message on the reconnected GET stream',
    );
    assert.deepEqual(two.ctx, {});
    assert.equal(two.msg.params.last, 'g1');
    assert.deepEqual(peer.received.find((r) => r.msg.method === 'notifications/one')?.ctx, {});

    // HTTP failures of requests become JSON-RPC errors
    const garbage = await peer.request('json/garbage', {});
    assert.equal(garbage.msg.error.code, -32603);
    assert.equal(garbage.msg.error.data.code, 'GW_BACKEND_PROTOCOL_ERROR');
    assert.match(garbage.msg.error.message, /not JSON/);
    const e500 = await peer.request('fail/500', {});
    assert.deepEqual(e500.msg.error.data, { code: 'GW_BACKEND_UNAVAILABLE', status: 500 });
    assert.match(e500.msg.error.message, /HTTP 500: boom/);
    const slow = await peer.request('slow', {});
    assert.equal(slow.msg.error.data.code, 'GW_BACKEND_TIMEOUT');

    // A failed notification goes to onerror
    await t.send({ jsonrpc: '2.0', method: 'notifications/fail' });
    assert.match(peer.errors.at(-1)?.message ?? '', /HTTP 500/);

    await t.close();
    assert.deepEqual(peer.closes, [undefined]);

    // Every request carried the configured header; the session and version headers once known.
    const posts = srv.seen.filter((s) => s.method === 'POST');
    assert.ok(srv.seen.every((s) => s.headers['x-api-key'] === 'k-123'));
    assert.equal(posts[0]!.rpc, 'initialize');
    assert.equal(posts[0]!.headers['mcp-session-id'], undefined);
    assert.equal(posts[0]!.headers['mcp-protocol-version'], undefined);
    assert.match(posts[0]!.headers.accept ?? '', /application\/json.*text\/event-stream/);
    assert.equal(posts[0]!.headers['content-type'], 'application/json');
    for (const s of srv.seen.slice(1)) {
      assert.equal(s.headers['mcp-session-id'], 'sess-1', `${s.method} ${s.rpc ?? ''}`);
      assert.equal(s.headers['mcp-protocol-version'], '2025-11-25');
    }
    assert.ok(
      srv.seen.filter((s) => s.method === 'GET').every((s) => s.headers.accept === 'text/event-stream'),
    );
    assert.equal(srv.seen.at(-1)!.method, 'DELETE');
  });

  test('404 to a request that carried the session: error answer and onclose(err)', async () => {
    const srv = scriptedStreamableServer({ getStream: '405' });
    servers.push(srv);
    const t = new StreamableHttpTransport({ url: await srv.listen(), log: collectingLog() });
    open.push(t);
    const peer = new Peer(t);
    await peer.handshake('2025-06-18');
    const r = await peer.request('session/gone', {});
    assert.deepEqual(r.msg.error.data, { code: 'GW_BACKEND_UNAVAILABLE', status: 404 });
    await peer.until(() => (peer.closes.length ? true : undefined), 'onclose');
    assert.match(peer.closes[0]?.message ?? '', /session ended \(HTTP 404\)/);
    await t.close();
    assert.equal(peer.closes.length, 1);
    assert.ok(!srv.seen.some((s) => s.method === 'DELETE'), 'no DELETE for a session that is gone');
  });

  test('a closed port: the request gets GW_BACKEND_UNAVAILABLE promptly', async () => {
    const port = await freePort();
    const t = new StreamableHttpTransport({ url: `http://127.0.0.1:${port}/mcp`, log: collectingLog() });
    open.push(t);
    const peer = new Peer(t);
    const started = Date.now();
    const r = await peer.request('initialize', {
      protocolVersion: '2025-11-25',
      capabilities: {},
      clientInfo: CLIENT_INFO,
    });
    assert.ok(Date.now() - started < 2000, 'promptly');
    assert.equal(r.msg.error.code, -32603);
    assert.equal(r.msg.error.data.code, 'GW_BACKEND_UNAVAILABLE');
    assert.match(r.msg.error.message, /ECONNREFUSED/);
    assert.deepEqual(r.ctx, { relatedRequestId: 1 });
  });
});

// ---------------------------------------------------------------------------------------------------
// Legacy HTTP+SSE

describe('LegacySseTransport', () => {
  let everything: { base: string; child: ChildProcess } | undefined;
  const open: UpstreamTransport[] = [];
  const servers: Server[] = [];
  before(async () => {
    everything = await startEverything('sse');
  });
  after(async () => {
    await Promise.all(open.map((t) => t.close()));
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await stopChild(everything?.child);
  });

  test('server-everything over HTTP+SSE: endpoint, handshake, tools/list, echo, progress', async () => {
    const t = new LegacySseTransport({ url: `${everything!.base}/sse`, log: collectingLog() });
    open.push(t);
    const peer = new Peer(t);
    await t.start();
    assert.match(t.endpoint ?? '', new RegExp(`^${everything!.base}/message\\?sessionId=`));
    await peer.handshake('2024-11-05');
    await exerciseEverything(peer);
    const op = await peer.request('tools/call', {
      name: 'trigger-long-running-operation',
      arguments: { duration: 0.1, steps: 2 },
      _meta: { progressToken: 'tok-sse' },
    });
    assert.match(op.msg.result.content[0].text, /completed/);
    assert.deepEqual(op.ctx, {}, 'legacy SSE relates nothing');
    assert.equal(peer.received.filter((r) => r.msg.method === 'notifications/progress').length, 2);
    assert.deepEqual(peer.errors, []);
    await t.close();
    assert.deepEqual(peer.closes, [undefined]);
    const after = await peer.request('ping', undefined, 1000);
    assert.equal(after.msg.error.data.code, 'GW_BACKEND_UNAVAILABLE');
  });

  test('an endpoint on another origin is refused', async () => {
    const srv = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: endpoint\ndata: http://localhost:9/steal\n\n');
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const addr = srv.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    const t = new LegacySseTransport({ url: `http://127.0.0.1:${port}/sse`, log: collectingLog() });
    open.push(t);
    await assert.rejects(t.start(), /another origin \(http:\/\/localhost:9\): refused/);
  });

  test('a closed port: start() rejects clearly', async () => {
    const port = await freePort();
    const t = new LegacySseTransport({ url: `http://127.0.0.1:${port}/sse`, log: collectingLog() });
    open.push(t);
    await assert.rejects(t.start(), /unreachable: connection refused/);
  });
});
