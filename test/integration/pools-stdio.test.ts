/**
 * stdio pools with real processes: N processes per server whatever the session churn (1,000 sessions
 * opened and closed), calls spread over the pool, a server-to-client request still reaching the client
 * whose call caused it, idle processes reaped and started again under load, and a process that keeps
 * dying given up after the restart limit.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { raw, startGateway } from '../helpers/gateway.js';
import { ROOT } from '../helpers/net.js';
import { RawCaller, until } from '../helpers/pool-replicas.js';
import { connectSdk } from '../helpers/sdk-clients.js';

const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;

/** Child processes of this test process running `marker` (the gateway runs in-process). */
function childCount(marker: string): number {
  const out = execFileSync('ps', ['-o', 'args=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(marker)).length;
}

const stdioPool = (name: string, marker: string, extra: Record<string, unknown> = {}) => ({
  name,
  transport: 'stdio',
  command: process.execPath,
  args: [SCRIPTED, marker],
  processes: 3,
  health: { intervalMs: 200, timeoutMs: 2000 },
  ...extra,
});

describe('a stdio pool of three processes', { timeout: 240_000 }, () => {
  let gw: RunningNode;
  let mcp: string;
  const marker = 'pool-churn';

  before(async () => {
    gw = await startGateway({ servers: [stdioPool('p', marker, { balancer: 'least-connections' })] });
    mcp = `${gw.url}/mcp`;
  });
  after(async () => gw?.close());

  test('1,000 sessions opened and closed: the process count stays 3 and calls spread over them', async () => {
    assert.equal(childCount(marker), 3);
    const pids = new Map<string, number>();
    const counts: number[] = [];
    let opened = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (opened < 1000) {
          opened++;
          const s = await RawCaller.open(mcp);
          const r = await s.call('p__pid');
          const pid = r.result.content[0].text as string;
          pids.set(pid, (pids.get(pid) ?? 0) + 1);
          await s.close();
          if (opened % 100 === 0) counts.push(childCount(marker));
        }
      }),
    );
    console.log(
      `# 1000 sessions: process counts sampled ${counts.join(',')}; calls per pid ${[...pids.values()].join(',')}`,
    );
    assert.equal(opened, 1000);
    assert.ok(
      counts.every((c) => c === 3),
      `process count stayed 3: ${counts.join(',')}`,
    );
    assert.equal(childCount(marker), 3);
    assert.equal(pids.size, 3, 'every process served calls');
    const ready = (await raw(`${gw.url}/readyz`, { method: 'GET' })).json;
    assert.equal(ready.servers.p.pool.replicas.length, 3);
  });

  test("a process's sampling request reaches the client whose call is on that process", async () => {
    const a = await connectSdk('v1', mcp, {
      sampling: () => ({ role: 'assistant', content: { type: 'text', text: 'from A' }, model: 'a' }),
    });
    const b = await connectSdk('v1', mcp, {
      sampling: () => ({ role: 'assistant', content: { type: 'text', text: 'from B' }, model: 'b' }),
    });
    // Concurrent calls of two sessions: least-connections puts them on two processes, so each process has
    // calls of one session only and its request can be tied to it (one shared process could not).
    const [ra, rb] = await Promise.all([
      a.callTool({ name: 'p__ask', arguments: {} }),
      b.callTool({ name: 'p__ask', arguments: {} }),
    ]);
    assert.equal(JSON.parse(ra.content[0].text).result.content.text, 'from A');
    assert.equal(JSON.parse(rb.content[0].text).result.content.text, 'from B');
    await Promise.all([a.close(), b.close()]);
  });
});

describe('idle reaping', { timeout: 60_000 }, () => {
  let gw: RunningNode;
  const marker = 'pool-reap';

  before(async () => {
    gw = await startGateway({
      servers: [
        stdioPool('p', marker, {
          balancer: 'least-connections',
          pool: { idleTimeoutMs: 300, minProcesses: 1 },
        }),
      ],
    });
  });
  after(async () => gw?.close());

  test('idle processes beyond minProcesses stop, and start again when the live ones are busy', async () => {
    await until('the pool reaped to one process', () => (childCount(marker) === 1 ? true : undefined));
    const sessions = await Promise.all(Array.from({ length: 4 }, () => RawCaller.open(`${gw.url}/mcp`)));
    // Keep the one process busy (a sampling-free call that waits: `ask` without a capability answers at once,
    // so overlapping calls are what makes it busy).
    await until('a process started again under load', async () => {
      await Promise.all(sessions.map((s) => s.call('p__pid')));
      return childCount(marker) > 1 ? true : undefined;
    });
    assert.ok(childCount(marker) <= 3, 'never more than `processes`');
  });
});

describe('a process that keeps dying', { timeout: 60_000 }, () => {
  let gw: RunningNode;

  before(async () => {
    gw = await startGateway({
      servers: [
        stdioPool('p', 'pool-dying', {
          processes: 1,
          restart: { initialDelayMs: 20, maxDelayMs: 50, failedAfter: 100 },
          pool: { maxRestarts: 2, restartWindowMs: 60_000 },
        }),
      ],
    });
  });
  after(async () => gw?.close());

  test('is given up after the restart limit and /readyz says so', async () => {
    const s = await RawCaller.open(`${gw.url}/mcp`);
    for (let i = 0; i < 3; i++) {
      await until('the process up', async () => {
        const r = (await raw(`${gw.url}/readyz`, { method: 'GET' })).json;
        return r.servers.p.pool.replicas[0].state === 'ready' ? true : undefined;
      });
      const crashed = await s.call('p__crash');
      assert.ok(crashed.error, 'a call that kills its process fails');
    }
    const r = await until('the slot given up', async () => {
      const j = (await raw(`${gw.url}/readyz`, { method: 'GET' })).json;
      return j.servers.p.pool.replicas[0].givenUp ? j : undefined;
    });
    assert.equal(r.servers.p.state, 'failed');
    assert.equal(childCount('pool-dying'), 0, 'no process is left running');
    const after = await s.call('p__pid');
    assert.equal(after.error?.data?.code, 'GW_BACKEND_UNAVAILABLE');
  });
});
