/**
 * Process and session lifecycles: stdio shutdown escalates to SIGKILL, stderr goes to the log, closing
 * the gateway leaves no child behind, and idle sessions expire and close their backend sessions.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { StdioTransport } from '../../core/backends/stdio.js';
import type { Logger } from '../../shared/log.js';
import { MCP_HEADERS, raw, rawSession, startGateway } from '../helpers/gateway.js';
import { ROOT, startEverythingHttp, stopChild } from '../helpers/net.js';
import { startRecordingProxy } from '../helpers/recording-proxy.js';

function collectingLog(): Logger & { lines: { level: string; obj: any; msg?: string }[] } {
  const lines: { level: string; obj: any; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  const log = {
    lines,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    fatal: at('fatal'),
    child: () => log,
  };
  return log as Logger & { lines: typeof lines };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function childArgs(): string[] {
  return execFileSync('ps', ['-o', 'args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n');
}

test('stdio shutdown: close stdin, then SIGTERM, then SIGKILL; stderr lines reach the log', async () => {
  const log = collectingLog();
  const t = new StdioTransport({
    command: process.execPath,
    args: [`${ROOT}dist/test/fixtures/stubborn-stdio.js`],
    log,
    serverName: 'stubborn',
    shutdownGraceMs: 300,
  });
  let closedReason: Error | undefined;
  let closes = 0;
  t.onclose = (r) => {
    closes++;
    closedReason = r;
  };
  await t.start();
  const pid = Number(
    execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .find((l) => l.includes('stubborn-stdio.js'))!
      .trim()
      .split(/\s+/)[0],
  );
  assert.ok(alive(pid));
  const started = Date.now();
  await t.close();
  const took = Date.now() - started;
  assert.ok(!alive(pid), 'the process is gone');
  assert.ok(took >= 550 && took < 3000, `escalated through both grace periods (${took} ms)`);
  assert.equal(closes, 1);
  assert.equal(closedReason, undefined);
  const stderr = log.lines
    .filter((l) => l.obj.server === 'stubborn' && l.obj.stderr)
    .map((l) => l.obj.stderr);
  assert.ok(stderr.includes('stubborn server starting'));
  assert.ok(stderr.includes('ignoring SIGTERM'), 'SIGTERM was sent before SIGKILL');
});

test('a stdio command that does not exist fails start() with a clear error', async () => {
  const t = new StdioTransport({ command: '/nonexistent/server', log: collectingLog(), serverName: 'x' });
  await assert.rejects(t.start(), /cannot start \/nonexistent\/server/);
});

test('closing the gateway stops every stdio backend it started', async () => {
  const gw = await startGateway({
    servers: [
      {
        name: 'a',
        transport: 'stdio',
        command: process.execPath,
        args: [`${ROOT}dist/test/fixtures/scripted-server.js`, 'lifecycle-marker'],
      },
    ],
  });
  assert.equal(childArgs().filter((l) => l.includes('lifecycle-marker')).length, 1);
  await gw.close();
  assert.equal(childArgs().filter((l) => l.includes('lifecycle-marker')).length, 0);
});

test('an idle session expires: the client gets 404 and its backend session is closed (DELETE)', async () => {
  const everything = await startEverythingHttp('streamableHttp');
  const proxy = await startRecordingProxy(everything.url);
  const gw = await startGateway({
    sessions: { idleTimeoutMs: 300 },
    servers: [{ name: 'e', transport: 'streamable-http', url: proxy.url }],
  });
  try {
    const mcp = `${gw.url}/mcp`;
    const sid = await rawSession(mcp);
    const r = await raw(mcp, {
      headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
      body: {
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'e__echo', arguments: { message: 'x' } },
      },
    });
    assert.equal(r.json.result.content[0].text, 'Echo: x');
    const deletesBefore = proxy.requests.filter((q) => q.startsWith('DELETE')).length;
    let status = 200;
    for (let i = 0; i < 40 && status !== 404; i++) {
      await new Promise((res) => setTimeout(res, 100));
      if (i < 5) continue; // let it go idle first
      status = (
        await raw(mcp, {
          headers: { ...MCP_HEADERS, 'mcp-session-id': sid },
          body: { jsonrpc: '2.0', id: 2, method: 'ping' },
        })
      ).status;
    }
    assert.equal(status, 404);
    assert.ok(
      proxy.requests.filter((q) => q.startsWith('DELETE')).length > deletesBefore,
      'the backend session was deleted',
    );
  } finally {
    await gw.close();
    await proxy.close();
    await stopChild(everything.child);
  }
});
