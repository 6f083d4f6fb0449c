/**
 * A draining core keeps its idle keep-alive connections open and answers on them: a request an edge sends
 * on one after the core stopped accepting gets the core's retryable 503 (GW_SHUTTING_DOWN, with the
 * draining header), never a connection closed under it. Closed idle connections were a race: an edge that
 * sent a call on one as the core closed it saw the core "lost mid-call" and could not repeat a call that is
 * not idempotent (seen once in the rolling-restart test under a full suite's load).
 *
 * Processes as in production: a backend, a core and an edge (`mcpgw start`); a call in flight through the
 * edge keeps the core in its drain; a raw socket to the core plays the edge's idle pooled connection.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ANONYMOUS } from '../../shared/identity/principal.js';
import { InternalTokenSigner } from '../../shared/identity/internal-token.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { collectOutput } from '../helpers/output.js';
import { makeSigningKey } from '../helpers/pki.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const MAIN = `${ROOT}dist/cli/main.js`;
const COUNTING = `${ROOT}dist/test/fixtures/counting-http.js`;
const DRAIN_DELAY_MS = 300;
/** The call in flight through the drain: long enough for the checks made meanwhile. */
const SLOW_MS = 5_000;

const dir = mkdtempSync(join(tmpdir(), 'mcpgw-core-drain-'));
const children: ChildProcess[] = [];
after(async () => {
  await Promise.all(children.map((c) => stopChild(c)));
  rmSync(dir, { recursive: true, force: true });
});

async function startNode(name: string, doc: object) {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(doc));
  const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
  children.push(child);
  return { child, out: collectOutput(child) };
}

/** One HTTP/1.1 exchange on `socket`: the raw answer up to the end of its headers. */
function exchange(socket: Socket, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed || socket.readableEnded)
      return reject(new Error('connection closed by the core before the request was sent'));
    let got = '';
    const onData = (b: Buffer) => {
      got += b.toString('latin1');
      if (got.includes('\r\n\r\n')) done(() => resolve(got));
    };
    const onEnd = () =>
      done(() => reject(new Error(`connection closed by the core; got ${JSON.stringify(got)}`)));
    const onError = (err: Error) => done(() => reject(err));
    const done = (f: () => void) => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      f();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.write(request);
  });
}

test('a draining core answers on its idle keep-alive connections with a retryable 503, and still finishes the call in flight', async () => {
  const backendPort = await freePort();
  children.push(await spawnUntil(process.execPath, [COUNTING, '--port', String(backendPort)], /listening/));
  const key = makeSigningKey(dir, 'edge-signing');
  const corePort = await freePort();
  const edgePort = await freePort();
  const lifecycle = { drainDelayMs: DRAIN_DELAY_MS, drainTimeoutMs: 20_000 };
  const core = await startNode('core', {
    role: 'core',
    region: 'eu',
    store: { kind: 'memory' },
    log: { level: 'info' },
    lifecycle,
    listen: { host: '127.0.0.1', port: corePort },
    internal: { id: 'core-1', trustedKeys: [key.pub] },
    servers: [{ name: 'counter', transport: 'streamable-http', url: `http://127.0.0.1:${backendPort}/mcp` }],
  });
  await startNode('edge', {
    role: 'edge',
    region: 'eu',
    store: { kind: 'memory' },
    log: { level: 'info' },
    listen: { host: '127.0.0.1', port: edgePort },
    auth: { mode: 'none' },
    internal: { id: 'edge-eu', signingKey: key.priv },
    cores: [{ region: 'eu', id: 'core-1', url: `http://127.0.0.1:${corePort}` }],
  });

  const client = await connectSdk('v2', `http://127.0.0.1:${edgePort}/servers/counter/mcp`);
  const socket = connect(corePort, '127.0.0.1');
  try {
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const first = await exchange(socket, 'GET /readyz HTTP/1.1\r\nHost: core\r\n\r\n');
    assert.match(first, /^HTTP\/1\.1 200 /);

    // The token an edge would send (minted now: nothing slow between the drain and the late call).
    const silent = { info: () => {}, warn: () => {}, error: () => {} };
    const signer = new InternalTokenSigner({
      keyFile: key.priv,
      issuer: 'edge-eu',
      region: 'eu',
      log: silent,
    });
    const token = await signer.tokenFor(ANONYMOUS, 'core-1');
    signer.close();

    // A call that outlasts the drain delay keeps the core draining, not closed.
    const slow = client.callTool({ name: 'slow', arguments: { ms: SLOW_MS } });
    await new Promise((r) => setTimeout(r, 200));
    const exited = new Promise<number | null>((r) => core.child.once('exit', (code) => r(code)));
    core.child.kill('SIGTERM');
    // Past the drain delay the core no longer accepts connections (polled: a loaded machine is slow)...
    const refusedBy = Date.now() + SLOW_MS - 1_500;
    for (;;) {
      const refused = await new Promise<boolean>((resolve) => {
        const fresh = connect(corePort, '127.0.0.1');
        fresh.once('connect', () => (fresh.destroy(), resolve(false)));
        fresh.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
      });
      if (refused) break;
      assert.ok(Date.now() < refusedBy, 'a new connection is refused once the core stopped accepting');
      await new Promise((r) => setTimeout(r, 50));
    }
    // ...but the idle one is still open, and a call an edge sends on it is refused in a way it may retry.
    const body = '{"scope":"counter","message":{"jsonrpc":"2.0","id":1,"method":"ping"}}';
    const late = await exchange(
      socket,
      `POST /internal/v1/sessions/s1/request HTTP/1.1\r\nHost: core\r\nauthorization: Bearer ${token}\r\n` +
        `x-mcpgw-edge-instance: test\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
    assert.match(late, /^HTTP\/1\.1 503 /, late);
    assert.match(late, /x-mcpgw-draining: 1/i, late);

    const r = await slow;
    assert.equal(
      (r.content as { text?: string }[])[0]?.text,
      `slept ${SLOW_MS}`,
      'the call in flight was answered',
    );
    assert.equal(await exited, 0, `core exit status; output:\n${core.out.lines().slice(-20).join('\n')}`);
  } finally {
    socket.destroy();
    await client.close().catch(() => {});
  }
});
