/**
 * Many client sessions over one shared stdio process: each client's ids and progress tokens are rewritten
 * on the way in and restored on the way out, so two clients that chose the same request id and the same
 * progress token each get exactly their own progress and answer, and a cancellation reaches the backend
 * under the id the backend knows.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, rawSession, sseMessages, startGateway } from '../helpers/gateway.js';
import { EVERYTHING, ROOT } from '../helpers/net.js';

describe('one stdio process, many sessions', { timeout: 30_000 }, () => {
  let gw: RunningNode;
  let mcp: string;
  const log = join(mkdtempSync(join(tmpdir(), 'mcpgw-mux-')), 'stdin.log');
  const sent = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  const headers = (sid: string) => ({
    ...MCP_HEADERS,
    'mcp-session-id': sid,
    'mcp-protocol-version': '2025-11-25',
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

  test('two sessions using the same request id and progress token each get only their own', async () => {
    const [a, b] = await Promise.all([rawSession(mcp), rawSession(mcp)]);
    const longCall = (sid: string, steps: number) =>
      raw(mcp, {
        headers: headers(sid),
        body: {
          jsonrpc: '2.0',
          id: 1,
          method: 'tools/call',
          params: {
            name: 'everything__trigger-long-running-operation',
            arguments: { duration: steps * 0.05, steps },
            _meta: { progressToken: 'same-token' },
          },
        },
      });
    const [ra, rb] = await Promise.all([longCall(a, 3), longCall(b, 5)]);
    for (const [r, steps] of [
      [ra, 3],
      [rb, 5],
    ] as const) {
      const msgs = sseMessages(r.text);
      const progress = msgs.filter((m) => m.method === 'notifications/progress');
      assert.deepEqual(
        progress.map((p) => [p.params.progressToken, p.params.progress, p.params.total]),
        Array.from({ length: steps }, (_, i) => ['same-token', i + 1, steps]),
      );
      const answer = msgs.find((m) => m.id === 1);
      assert.match(answer.result.content[0].text, new RegExp(`Steps: ${steps}`));
    }
    // The backend never saw the clients' token or ids: each call had a token and an id of its own.
    const calls = sent()
      .split('\n')
      .filter((l) => l.includes('trigger-long-running-operation'))
      .map((l) => JSON.parse(l));
    assert.equal(calls.length, 2);
    const tokens = calls.map((c) => c.params._meta.progressToken);
    assert.ok(tokens.every((t) => t !== 'same-token') && tokens[0] !== tokens[1], JSON.stringify(tokens));
    assert.notEqual(calls[0].id, calls[1].id);
  });

  test('a client cancellation reaches the backend under the id the backend knows', async () => {
    const sid = await rawSession(mcp);
    const call = raw(mcp, {
      headers: headers(sid),
      body: {
        jsonrpc: '2.0',
        id: 'client-call-7',
        method: 'tools/call',
        params: { name: 'everything__trigger-long-running-operation', arguments: { duration: 5, steps: 5 } },
      },
    });
    // Wait until the call reached the backend, then cancel it with the client's own id.
    let backendId: unknown;
    for (let i = 0; i < 100 && backendId === undefined; i++) {
      const line = sent()
        .split('\n')
        .filter((l) => l.includes('"duration":5'))
        .at(-1);
      backendId = line ? JSON.parse(line).id : undefined;
      if (backendId === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(backendId !== undefined && backendId !== 'client-call-7');
    const c = await raw(mcp, {
      headers: headers(sid),
      body: { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'client-call-7' } },
    });
    assert.equal(c.status, 202);
    const r = await call;
    assert.equal(r.status, 202, 'a cancelled request gets no answer');
    // The cancellation is written to the backend as the client's request ends: wait for it to land.
    let cancels: any[] = [];
    for (let i = 0; i < 100 && !cancels.some((m) => m.params.requestId === backendId); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 20));
      cancels = sent()
        .split('\n')
        .filter((l) => l.includes('notifications/cancelled'))
        .map((l) => JSON.parse(l));
    }
    assert.ok(
      cancels.some((m) => m.params.requestId === backendId),
      `the backend got a cancellation for ${JSON.stringify(backendId)}: ${JSON.stringify(cancels)}`,
    );
  });
});
