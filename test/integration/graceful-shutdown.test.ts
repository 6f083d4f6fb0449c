/**
 * SIGTERM as Kubernetes sends it: the node turns not-ready at once (/readyz 503 "draining") while staying
 * alive (/healthz 200) and still serving its sessions through the drain delay, then closes and exits 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { configFile, mcpgw } from '../helpers/cli.js';
import { EVERYTHING, freePort, ROOT } from '../helpers/net.js';
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
