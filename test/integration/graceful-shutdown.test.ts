/**
 * SIGTERM as Kubernetes sends it: the node turns not-ready at once (/readyz 503 "draining") while staying
 * alive (/healthz 200) and still serving its sessions through the drain delay; then it stops accepting,
 * ends its SSE streams with a `retry:` hint (read here with a plain HTTP client), waits for the calls in
 * flight (at most the drain timeout), closes and exits 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { test } from 'node:test';
import { configFile, mcpgw } from '../helpers/cli.js';
import { EVERYTHING, freePort, ROOT, spawnUntil } from '../helpers/net.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const CLI = `${ROOT}dist/cli/main.js`;

test('on SIGTERM /readyz turns 503 at once, /healthz stays 200, calls still work until the drain delay ends', async () => {
  const port = await freePort();
  const file = configFile({
    role: 'single',
    listen: { host: '127.0.0.1', port },
    auth: { mode: 'none' },
    store: { kind: 'memory' },
    log: { level: 'warn' },
    servers: [
      { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
    ],
  });
  const child = spawn(process.execPath, [CLI, 'start', '--config', file], {
    cwd: ROOT,
    env: { ...process.env, MCPGW_DRAIN_DELAY_MS: '2500' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const base = `http://127.0.0.1:${port}`;
  try {
    let ready = false;
    for (let i = 0; i < 600 && !ready; i++) {
      ready = await fetch(`${base}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (!ready) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ready, `not ready: ${output}`);
    const client = await connectSdk('v2', `${base}/servers/everything/mcp`);
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const readyz = await fetch(`${base}/readyz`);
    assert.equal(readyz.status, 503);
    assert.equal(((await readyz.json()) as { status: string }).status, 'draining');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const r = await client.callTool({ name: 'echo', arguments: { message: 'still here' } });
    assert.match(r.content[0].text, /still here/);
    await client.close().catch(() => {});
    assert.equal(await exited, 0, output);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('a drain delay that is not a whole number of milliseconds is refused', async () => {
  const file = configFile({ role: 'single', listen: { host: '127.0.0.1', port: 0 }, auth: { mode: 'none' } });
  const r = await mcpgw(['start', '--config', file], { env: { MCPGW_DRAIN_DELAY_MS: '5s' } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /MCPGW_DRAIN_DELAY_MS must be a whole number/);
});

const COUNTING = `${ROOT}dist/test/fixtures/counting-http.js`;

/** A single node in front of the counting fixture, started with `mcpgw start`; resolves once ready. */
async function startDraining(lifecycle: { drainDelayMs: number; drainTimeoutMs: number }) {
  const backendPort = await freePort();
  const backend = await spawnUntil(process.execPath, [COUNTING, '--port', String(backendPort)], /listening/);
  const port = await freePort();
  const file = configFile({
    role: 'single',
    listen: { host: '127.0.0.1', port },
    auth: { mode: 'none' },
    store: { kind: 'memory' },
    log: { level: 'info' },
    sessions: { sseRetryMs: 2500 },
    lifecycle,
    servers: [{ name: 'counter', transport: 'streamable-http', url: `http://127.0.0.1:${backendPort}/mcp` }],
  });
  const child = spawn(process.execPath, [CLI, 'start', '--config', file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const base = `http://127.0.0.1:${port}`;
  let ready = false;
  for (let i = 0; i < 600 && !ready; i++) {
    ready = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(ready, `not ready: ${output}`);
  const mcp = `${base}/servers/counter/mcp`;
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
  };
  const init = await fetch(mcp, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
  assert.equal(init.status, 200);
  const sid = init.headers.get('mcp-session-id')!;
  await init.text();
  const session = { ...headers, 'mcp-session-id': sid };
  await fetch(mcp, {
    method: 'POST',
    headers: session,
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  }).then((r) => r.text());
  const call = (ms: number) =>
    fetch(mcp, {
      method: 'POST',
      headers: session,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'slow', arguments: { ms } },
      }),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));
  return {
    child,
    exited,
    mcp,
    legacy: `${base}/servers/counter/sse`,
    session,
    call,
    output: () => output,
    stop: () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      backend.kill('SIGKILL');
    },
  };
}

/** Opens the session's GET stream with a plain HTTP client; collects what it reads until it ends. */
function openGetStream(mcp: string, headers: Record<string, string>) {
  return new Promise<{ text: () => string; ended: Promise<number> }>((resolve, reject) => {
    const req = httpGet(mcp, { headers: { ...headers, accept: 'text/event-stream' } }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /text\/event-stream/);
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      const ended = new Promise<number>((r) => res.once('end', () => r(Date.now())));
      resolve({ text: () => text, ended });
    });
    req.on('error', reject);
  });
}

test('draining: open SSE streams get a retry hint and end; a call in flight completes before the exit', async () => {
  const node = await startDraining({ drainDelayMs: 400, drainTimeoutMs: 20_000 });
  try {
    const stream = await openGetStream(node.mcp, node.session);
    // A legacy HTTP+SSE session (2024-11-05) is its stream: it ends with the same hint.
    const legacy = await openGetStream(node.legacy, {});
    const inFlight = node.call(3_000);
    await new Promise((r) => setTimeout(r, 300));
    const sigterm = Date.now();
    node.child.kill('SIGTERM');
    const endedAt = await stream.ended;
    assert.match(stream.text(), /(^|\n)retry: 2500\n\n/, `the stream read: ${JSON.stringify(stream.text())}`);
    await legacy.ended;
    assert.match(legacy.text(), /^event: endpoint\n/);
    assert.match(
      legacy.text(),
      /\nretry: 2500\n\n$/,
      `the legacy stream read: ${JSON.stringify(legacy.text())}`,
    );
    // Not before the drain delay: clients keep their stream while the load balancer moves away.
    assert.ok(endedAt - sigterm >= 350, `stream ended ${endedAt - sigterm} ms after SIGTERM`);
    // Sent before SIGTERM, running well past the drain delay: answered, so the node waited for it.
    const answer = await inFlight;
    assert.equal(answer.status, 200);
    assert.match(answer.text, /slept 3000/);
    assert.equal(await node.exited, 0, node.output());
    assert.ok(Date.now() - sigterm >= 2_500, 'the node exited only once the call in flight was answered');
    assert.match(node.output(), /"msg":"drained"/);
  } finally {
    node.stop();
  }
});

test('draining: the drain timeout bounds the wait for calls in flight', async () => {
  const node = await startDraining({ drainDelayMs: 200, drainTimeoutMs: 700 });
  try {
    const inFlight = node.call(20_000).catch((err: Error) => ({ status: 0, text: err.message }));
    await new Promise((r) => setTimeout(r, 300));
    const sigterm = Date.now();
    node.child.kill('SIGTERM');
    assert.equal(await node.exited, 0, node.output());
    const took = Date.now() - sigterm;
    assert.ok(took < 10_000, `exited ${took} ms after SIGTERM, not after the 20 s call`);
    assert.ok(took >= 850, `exited ${took} ms after SIGTERM: the delay and the timeout were waited for`);
    assert.match(node.output(), /drain timeout passed with requests in flight/);
    assert.doesNotMatch((await inFlight).text, /slept/);
  } finally {
    node.stop();
  }
});
