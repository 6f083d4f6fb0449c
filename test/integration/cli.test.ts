/** The `mcpgw` command as a user runs it: help, config check, and the demo node `npm start` runs. */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { freePort, ROOT } from '../helpers/net.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const run = promisify(execFile);
const CLI = `${ROOT}dist/cli/main.js`;

async function mcpgw(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { cwd: ROOT });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('--help lists the commands', async () => {
  const r = await mcpgw(['--help']);
  assert.equal(r.code, 0);
  for (const s of ['mcpgw start --config FILE', 'mcpgw config check FILE', 'MCPGW_LISTEN__PORT'])
    assert.ok(r.stdout.includes(s), s);
});

test('an unknown flag or command is a usage error (exit 2, the help), not a stack trace', async () => {
  for (const args of [['--bogus'], ['frobnicate']]) {
    const r = await mcpgw(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^mcpgw: /);
    assert.ok(r.stderr.includes('mcpgw start --config FILE'), 'the help follows');
    assert.ok(!r.stderr.includes('    at '), 'no stack trace');
  }
});

test('config check accepts the demo config and reports every problem of a bad one with its path', async () => {
  const ok = await mcpgw(['config', 'check', 'deploy/demo/mcpgw.yaml']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /OK/);
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cfg-'));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    'role: single\nlisten: { host: 0.0.0.0, port: 99999 }\nservers:\n  - name: x\n    transport: stdio\n    bogus: true\n',
  );
  const r = await mcpgw(['config', 'check', bad]);
  assert.equal(r.code, 1);
  for (const path of ['listen.port', 'servers.0.command', 'servers.0'])
    assert.ok(r.stderr.includes(`  ${path}:`), `${path} in ${r.stderr}`);
  assert.match(r.stderr, /bogus/);
  const json = join(dir, 'broken.json');
  writeFileSync(json, '{ "role": ');
  const j = await mcpgw(['config', 'check', json]);
  assert.equal(j.code, 1);
  assert.match(j.stderr, /not valid JSON/);
});

test('config docs prints the reference generated from the schema', async () => {
  const r = await mcpgw(['config', 'docs']);
  assert.equal(r.code, 0);
  for (const key of ['`listen.port`', '`servers[] (transport: "stdio").command`', '`aggregate.pageSize`'])
    assert.ok(r.stdout.includes(key), key);
});

test('the demo node starts, serves both demo backends, and stops cleanly on SIGTERM', async () => {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'start', '--config', 'deploy/demo/mcpgw.yaml'], {
    cwd: ROOT,
    env: { ...process.env, MCPGW_LISTEN__PORT: String(port), MCPGW_LOG__LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  try {
    let ready = false;
    // The embedded store (PGlite) takes seconds to start on a busy machine.
    for (let i = 0; i < 1200 && !ready; i++) {
      ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (!ready) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ready, `not ready: ${output}`);
    const client = await connectSdk('v2', `http://127.0.0.1:${port}/mcp`);
    const { tools } = await client.listTools();
    const names = tools.map((t: any) => t.name);
    assert.ok(names.includes('everything__echo') && names.includes('notes__add_note'), names.join(','));
    const r = await client.callTool({ name: 'notes__add_note', arguments: { name: 'cli-test', text: 'hi' } });
    assert.equal(r.content[0].text, 'stored cli-test');
    const read = await client.readResource({ uri: 'notes://cli-test' });
    assert.equal(read.contents[0].text, 'hi');
    await client.close();
  } finally {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
  }
});

test('start refuses auth none on a non-loopback address', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cfg-'));
  const f = join(dir, 'open.yaml');
  writeFileSync(f, 'listen: { host: 0.0.0.0, port: 0 }\nauth: { mode: none }\n');
  const r = await mcpgw(['start', '--config', f]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /auth\.mode.*loopback/);
});
