/**
 * Relay details a user can check through real sockets: per-session log levels over one shared stdio
 * process, the restart backoff of a stdio server that keeps dying, /readyz while a backend is still
 * starting, completion/complete routed by resource template, and an HTTP backend's tools/list_changed
 * reaching the client's GET stream.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startSingleNode, type RunningNode } from '../../cli/single.js';
import { validateConfig } from '../../shared/config/load.js';
import { createLogger } from '../../shared/log.js';
import { MCP_HEADERS, raw, rawSession, sseMessages, startGateway } from '../helpers/gateway.js';
import { EVERYTHING, freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';

const TEE = `${ROOT}dist/test/fixtures/tee-stdio.js`;
const tmp = () => mkdtempSync(join(tmpdir(), 'mcpgw-relay-details-'));
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

const headers = (sid: string) => ({
  ...MCP_HEADERS,
  'mcp-session-id': sid,
  'mcp-protocol-version': '2025-11-25',
});

let nextId = 1;
/** One JSON-RPC request in session `sid`; the parsed answer (plain JSON or the response in an SSE body). */
async function rpc(mcp: string, sid: string, method: string, params: Record<string, unknown>): Promise<any> {
  const id = nextId++;
  const r = await raw(mcp, { headers: headers(sid), body: { jsonrpc: '2.0', id, method, params } });
  assert.equal(r.status, 200, `${method}: HTTP ${r.status} ${r.text}`);
  const msg = r.json ?? sseMessages(r.text).find((m) => m.id === id);
  assert.ok(msg, `${method}: no response in ${r.text}`);
  assert.equal(msg.id, id);
  return msg;
}

/** Polls `check` until it returns something truthy, or fails naming `what` after `timeoutMs`. */
async function until<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

/** A session's GET stream, read in the background; `messages` grows as events arrive. */
interface GetStream {
  messages: any[];
  waitFor(what: string, pred: (msgs: any[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

async function openGetStream(mcp: string, sid: string): Promise<GetStream> {
  const ctrl = new AbortController();
  const res = await fetch(mcp, {
    headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    signal: ctrl.signal,
  });
  assert.equal(res.status, 200, 'the GET stream opens');
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const messages: any[] = [];
  const wakers = new Set<() => void>();
  void (async () => {
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          messages.push(...sseMessages(buf.slice(0, end + 2)));
          buf = buf.slice(end + 2);
        }
        for (const w of wakers) w();
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    messages,
    waitFor: (what, pred, timeoutMs = 5000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!pred(messages)) return;
          wakers.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          wakers.delete(check);
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${what}; the GET stream carried ${JSON.stringify(messages)}`,
            ),
          );
        }, timeoutMs);
        wakers.add(check);
        check();
      }),
    close: () => ctrl.abort(),
  };
}

/** The JSON-RPC messages a tee-stdio fixture logged (what the gateway wrote to the backend). */
function teeLog(file: string): any[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l));
}

async function readyz(gw: RunningNode): Promise<{ status: number; json: any }> {
  const r = await raw(`${gw.url}/readyz`, { method: 'GET' });
  return { status: r.status, json: r.json };
}

// ------------------------------------------------------------------------------------------------------

describe('a shared stdio server-everything (log levels, completions)', { timeout: 60_000 }, () => {
  let gw: RunningNode;
  let mcp: string;
  const dir = tmp();
  const everythingLog = join(dir, 'everything.stdin.log');
  const plainLog = join(dir, 'plain.stdin.log');

  before(async () => {
    gw = await startGateway({
      servers: [
        // First in config order, with neither resource templates nor completions: a completion routed to
        // the first server instead of the template's owner lands here and fails.
        {
          name: 'plain',
          transport: 'stdio',
          command: process.execPath,
          args: [TEE, plainLog, process.execPath, `${ROOT}dist/test/fixtures/scripted-server.js`],
          env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['hello'], resources: ['plain://one'] }) },
        },
        {
          name: 'ev',
          transport: 'stdio',
          command: process.execPath,
          args: [TEE, everythingLog, process.execPath, EVERYTHING, 'stdio'],
        },
      ],
    });
    mcp = `${gw.url}/mcp`;
  });
  after(async () => gw?.close());

  test('logging/setLevel: the backend runs at the most verbose level asked; each session gets only its levels', async (t) => {
    const quiet = await rawSession(mcp); // asks for error and above
    const verbose = await rawSession(mcp); // asks for debug and above
    const caller = await rawSession(mcp); // toggles the backend's simulated logging
    const quietStream = await openGetStream(mcp, quiet);
    const verboseStream = await openGetStream(mcp, verbose);
    try {
      const setLevels = () =>
        teeLog(everythingLog)
          .filter((m) => m.method === 'logging/setLevel')
          .map((m) => m.params.level);

      assert.deepEqual((await rpc(mcp, quiet, 'logging/setLevel', { level: 'error' })).result, {});
      assert.deepEqual(setLevels(), ['error'], 'the backend was set to the only level asked so far');
      assert.deepEqual((await rpc(mcp, verbose, 'logging/setLevel', { level: 'debug' })).result, {});
      assert.deepEqual(setLevels(), ['error', 'debug'], 'the backend now logs at the most verbose level');
      assert.equal(
        teeLog(plainLog).filter((m) => m.method === 'logging/setLevel').length,
        0,
        'a server that does not declare logging is not asked to set a level',
      );

      // Every time toggle-simulated-logging starts the backend's logging it sends one message of a random
      // level at once (then one every 5 s, which the immediate second toggle cancels). Toggle until the
      // verbose session has seen both low (debug/info) and high (error+) levels, ending on a high one.
      const LOW = new Set(['debug', 'info']);
      const HIGH = new Set(['error', 'critical', 'alert', 'emergency']);
      const logs = (msgs: any[]) => msgs.filter((m) => m.method === 'notifications/message');
      const toggle = async (expect: RegExp) => {
        const r = await rpc(mcp, caller, 'tools/call', {
          name: 'ev__toggle-simulated-logging',
          arguments: {},
        });
        assert.match(r.result?.content?.[0]?.text ?? JSON.stringify(r), expect);
      };
      const deadline = Date.now() + 7000;
      for (let round = 0; ; round++) {
        assert.ok(
          round < 60 && Date.now() < deadline,
          `no mix of levels after ${round} rounds: ${JSON.stringify(logs(verboseStream.messages))}`,
        );
        const seen = logs(verboseStream.messages).length;
        await toggle(/^Started/);
        await verboseStream.waitFor(
          `the log message of round ${round} on the debug session`,
          (msgs) => logs(msgs).length > seen,
          3000,
        );
        await toggle(/^Stopped/);
        const got = logs(verboseStream.messages).map((m) => m.params.level as string);
        if (got.some((l) => LOW.has(l)) && got.some((l) => HIGH.has(l)) && HIGH.has(got.at(-1)!)) break;
      }
      const verboseLogs = logs(verboseStream.messages);
      t.diagnostic(`levels sent: ${verboseLogs.map((m) => m.params.level).join(', ')}`);
      assert.ok(
        verboseLogs.some((m) => LOW.has(m.params.level)),
        'the debug session received debug/info messages',
      );
      const expected = verboseLogs.filter((m) => HIGH.has(m.params.level));
      // The error session's stream is ordered like the debug one's, and the last message was error+: once it
      // holds as many messages as there were error+ ones, everything meant for it has arrived.
      await quietStream.waitFor(
        `${expected.length} error+ messages on the error session`,
        (msgs) => logs(msgs).length >= expected.length,
        3000,
      );
      const quietLogs = logs(quietStream.messages);
      assert.deepEqual(
        quietLogs.filter((m) => !HIGH.has(m.params.level)).map((m) => m.params),
        [],
        'the error session received nothing below error',
      );
      assert.deepEqual(
        quietLogs.map((m) => m.params),
        expected.map((m) => m.params),
        'the error session received exactly the error+ messages',
      );
    } finally {
      quietStream.close();
      verboseStream.close();
    }
  });

  test('completion/complete with a ref/resource goes to the server owning that template', async () => {
    const sid = await rawSession(mcp);
    const completions = (log: string) => teeLog(log).filter((m) => m.method === 'completion/complete');
    for (const uri of [
      'demo://resource/dynamic/text/{resourceId}',
      'demo://resource/dynamic/blob/{resourceId}',
    ]) {
      const before = completions(everythingLog).length;
      const r = await rpc(mcp, sid, 'completion/complete', {
        ref: { type: 'ref/resource', uri },
        argument: { name: 'resourceId', value: '42' },
      });
      assert.equal(r.error, undefined, `completion for ${uri}: ${JSON.stringify(r.error)}`);
      assert.deepEqual(r.result.completion.values, ['42'], 'server-everything completed the resource id');
      const sent = completions(everythingLog).slice(before);
      assert.equal(sent.length, 1, 'the template owner got the completion request');
      assert.deepEqual(sent[0].params.ref, { type: 'ref/resource', uri });
      assert.deepEqual(sent[0].params.argument, { name: 'resourceId', value: '42' });
    }
    assert.equal(completions(plainLog).length, 0, 'the other server was never asked');

    // A non-matching value gets the owner's own (empty) answer, not an error.
    const none = await rpc(mcp, sid, 'completion/complete', {
      ref: { type: 'ref/resource', uri: 'demo://resource/dynamic/text/{resourceId}' },
      argument: { name: 'resourceId', value: 'abc' },
    });
    assert.deepEqual(none.result?.completion?.values, [], JSON.stringify(none));
  });

  test('completion/complete with an unknown resource URI gets -32002 naming it', async () => {
    const sid = await rawSession(mcp);
    const uri = 'nowhere://unknown/{thing}';
    const r = await rpc(mcp, sid, 'completion/complete', {
      ref: { type: 'ref/resource', uri },
      argument: { name: 'thing', value: 'x' },
    });
    assert.equal(r.result, undefined);
    assert.equal(r.error.code, -32002);
    assert.equal(r.error.data?.code, 'GW_UNKNOWN_RESOURCE');
    assert.ok(r.error.message.includes(uri), `the message names the URI: ${r.error.message}`);
    assert.equal(
      teeLog(everythingLog).filter((m) => m.method === 'completion/complete' && m.params.ref.uri === uri)
        .length + teeLog(plainLog).filter((m) => m.method === 'completion/complete').length,
      0,
      'no backend was asked to complete it',
    );
  });
});

// ------------------------------------------------------------------------------------------------------

describe('a stdio server that exits at once', { timeout: 30_000 }, () => {
  let gw: RunningNode;
  const spawns = join(tmp(), 'spawns.log');
  const spawnTimes = () =>
    existsSync(spawns)
      ? readFileSync(spawns, 'utf8')
          .split('\n')
          .filter((l) => l.length > 0)
          .map(Number)
      : [];

  before(async () => {
    gw = await startGateway({
      servers: [
        {
          name: 'dead',
          transport: 'stdio',
          command: process.execPath,
          args: [
            '-e',
            "require('fs').appendFileSync(process.argv[1], Date.now() + '\\n'); process.exit(1)",
            spawns,
          ],
          restart: { initialDelayMs: 100, maxDelayMs: 1000, failedAfter: 5 },
        },
      ],
    });
  });
  after(async () => gw?.close());

  test('is respawned with doubling delays up to the ceiling, then counts as failed', async (t) => {
    // Watch /readyz while the restarts go on: restarting (not ready) until the fifth failed start.
    const states: string[] = [];
    const failedAt = await until(
      'state "failed" in /readyz',
      async () => {
        const r = await readyz(gw);
        const state = r.json.servers.dead.state as string;
        if (states.at(-1) !== state) states.push(state);
        if (state === 'restarting') assert.equal(r.status, 503, 'a restarting backend is not ready');
        return state === 'failed'
          ? { spawns: spawnTimes().length, body: r.json, status: r.status }
          : undefined;
      },
      8000,
    );
    assert.ok(states.includes('restarting'), `states seen: ${states.join(' -> ')}`);
    assert.equal(states.at(-1), 'failed');
    assert.equal(failedAt.spawns, 5, 'failed after exactly failedAfter (5) failed starts');
    assert.equal(failedAt.status, 200, 'a failed backend no longer holds /readyz back');
    assert.equal(typeof failedAt.body.servers.dead.error, 'string', 'readyz says why');

    // The restarts go on; the sixth start shows the ceiling (1000 ms, not 1600).
    const times = await until(
      'a sixth spawn',
      () => {
        const t = spawnTimes();
        return t.length >= 6 ? t : undefined;
      },
      5000,
    );
    const gaps = times.slice(1, 6).map((t, i) => t - times[i]!);
    const expected = [100, 200, 400, 800, 1000];
    const msg = `gaps between spawns ${JSON.stringify(gaps)}, expected about ${JSON.stringify(expected)}`;
    t.diagnostic(msg);
    for (let i = 0; i < expected.length; i++) {
      assert.ok(gaps[i]! >= expected[i]! - 5, `gap ${i} is at least the backoff delay: ${msg}`);
      assert.ok(gaps[i]! < expected[i]! + 500, `gap ${i} is not much more than the backoff delay: ${msg}`);
    }
    // Each gap is the delay plus a process start and exit (hundreds of ms on a loaded machine), so
    // neighbours may be out of order; the delays far apart show the doubling.
    assert.ok(gaps[3]! > gaps[0]!, `the delay grows: ${msg}`);
    assert.ok(gaps[3]! - gaps[1]! >= 400, `the delay doubles (800 - 200 = 600 more): ${msg}`);
    assert.ok(gaps[4]! < 1500, `the delay stops at maxDelayMs (1000), not 1600: ${msg}`);
  });

  test('its tools/call answers a clean JSON-RPC error with GW_BACKEND_UNAVAILABLE', async () => {
    const mcp = `${gw.url}/mcp`;
    const sid = await rawSession(mcp);
    const r = await raw(mcp, {
      headers: headers(sid),
      body: {
        jsonrpc: '2.0',
        id: 'call-dead',
        method: 'tools/call',
        params: { name: 'dead__anything', arguments: {} },
      },
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.equal(r.json.jsonrpc, '2.0');
    assert.equal(r.json.id, 'call-dead');
    assert.equal(r.json.result, undefined);
    assert.equal(r.json.error.code, -32603);
    assert.equal(r.json.error.data.code, 'GW_BACKEND_UNAVAILABLE');
    assert.match(r.json.error.message, /dead/);
    assert.match(r.json.error.message, /failed|restarting/);
  });
});

// ------------------------------------------------------------------------------------------------------

describe('/readyz while a backend is starting', { timeout: 30_000 }, () => {
  let gw: RunningNode;
  const gate = join(tmp(), 'go');

  before(async () => {
    const config = validateConfig(
      {
        role: 'single',
        listen: { host: '127.0.0.1', port: 0 },
        log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
        servers: [
          {
            name: 'slow',
            transport: 'stdio',
            command: process.execPath,
            args: [`${ROOT}dist/test/fixtures/slow-start-stdio.js`],
            env: { SLOW_START_GATE: gate },
          },
        ],
      },
      'test',
      {},
    );
    // Listening at once, without waiting for the backend's first connection.
    gw = await startSingleNode(config, { log: createLogger(config.log.level), waitForBackends: false });
  });
  after(async () => gw?.close());

  test('503 while the backend has not answered initialize, 200 once it has', async () => {
    const starting = await readyz(gw);
    assert.equal(starting.status, 503, JSON.stringify(starting.json));
    assert.equal(starting.json.status, 'starting');
    assert.equal(starting.json.servers.slow.state, 'starting');

    writeFileSync(gate, ''); // the backend may now answer initialize
    const ready = await until('/readyz 200', async () => {
      const r = await readyz(gw);
      return r.status === 200 ? r : undefined;
    });
    assert.equal(ready.json.status, 'ready');
    assert.equal(ready.json.servers.slow.state, 'ready');

    const mcp = `${gw.url}/mcp`;
    const sid = await rawSession(mcp);
    const r = await rpc(mcp, sid, 'tools/call', { name: 'slow__hello', arguments: {} });
    assert.equal(r.result?.content?.[0]?.text, 'hello from slow', JSON.stringify(r));
  });
});

// ------------------------------------------------------------------------------------------------------

describe('tools/list_changed from a Streamable HTTP backend', { timeout: 30_000 }, () => {
  let gw: RunningNode;
  let backend: ChildProcess;

  before(async () => {
    const port = await freePort();
    backend = await spawnUntil(
      process.execPath,
      [`${ROOT}dist/test/fixtures/late-tool-http.js`, '--port', String(port)],
      /listening/,
    );
    gw = await startGateway({
      servers: [{ name: 'late', transport: 'streamable-http', url: `http://127.0.0.1:${port}/mcp` }],
    });
  });
  after(async () => {
    await gw?.close();
    await stopChild(backend);
  });

  test("reaches the client's GET stream, and a fresh tools/list shows the new tool", async () => {
    const mcp = `${gw.url}/mcp`;
    const sid = await rawSession(mcp);
    const names = async () =>
      ((await rpc(mcp, sid, 'tools/list', {})).result.tools as any[]).map((t) => t.name as string).sort();
    assert.deepEqual(await names(), ['late__add_tool', 'late__hello']);

    const stream = await openGetStream(mcp, sid);
    try {
      const added = await rpc(mcp, sid, 'tools/call', {
        name: 'late__add_tool',
        arguments: { name: 'fresh' },
      });
      assert.equal(
        added.result?.content?.[0]?.text,
        'added fresh; GET stream open: true',
        `the gateway holds a GET stream to the backend: ${JSON.stringify(added)}`,
      );
      await stream.waitFor('notifications/tools/list_changed', (msgs) =>
        msgs.some((m) => m.method === 'notifications/tools/list_changed'),
      );
      assert.deepEqual(await names(), ['late__add_tool', 'late__fresh', 'late__hello']);
      const r = await rpc(mcp, sid, 'tools/call', { name: 'late__fresh', arguments: {} });
      assert.equal(r.result?.content?.[0]?.text, 'fresh says hi');
    } finally {
      stream.close();
    }
  });
});
