/**
 * `npm run cluster` (deploy/local/cluster.ts) as a user runs it: it starts two regions on free ports and
 * prints the endpoints; a real SDK client at region a's edge calls a tool only region b serves; Ctrl-C
 * (SIGINT) stops it with exit code 0 and leaves no process behind (gateways, NATS servers, backends).
 * Without nats-server on PATH it says so and exits 2.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, describe, test } from 'node:test';
import { ROOT } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const CLUSTER = `${ROOT}dist/deploy/local/cluster.js`;
const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_URL = process.env.MCPGW_TEST_PG_URL ?? 'postgres://root@127.0.0.1:5432/test';

/** Processes of this user whose environment holds `marker` (the cluster marks its backends with it). */
function marked(marker: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(marker)) out.push(Number(d));
    } catch {
      // gone, or another user's
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

describe('npm run cluster: a two-region topology on one machine', { timeout: 300_000 }, () => {
  let cluster: ChildProcess | undefined;
  let client: SdkClient | undefined;
  after(async () => {
    await client?.close().catch(() => {});
    if (cluster && cluster.exitCode === null) {
      cluster.kill('SIGINT');
      await exited(cluster);
    }
  });

  test("starts, serves region b's tool at region a's edge, and Ctrl-C stops every process", async () => {
    cluster = spawn(
      process.execPath,
      [CLUSTER, '--base-port', '0', '--redis', REDIS_URL, '--postgres', PG_URL],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    cluster.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    cluster.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not ready after 150 s:\n${out}`)), 150_000);
      const check = () => {
        if (/cluster ready/.test(out)) {
          clearTimeout(t);
          resolve();
        }
      };
      cluster!.stdout!.on('data', check);
      cluster!.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`the cluster exited (${code}):\n${out}`));
      });
    });
    const edgeA = /region a: edge\s+(http:\/\/127\.0\.0\.1:\d+)\/mcp/.exec(out)?.[1];
    assert.ok(edgeA, `no endpoint of region a's edge printed:\n${out}`);
    assert.match(out, /region b: edge\s+http:\/\/127\.0\.0\.1:\d+\/mcp/);
    assert.match(out, /nats\s+nats:\/\/127\.0\.0\.1:\d+\s+\(JetStream domain b\)/);
    const pids = (/pids: ([\d ]+)/.exec(out)?.[1] ?? '').trim().split(/\s+/).map(Number);
    const marker = /MCPGW_CLUSTER_RUN=([0-9a-f]+)/.exec(out)?.[1];
    assert.equal(pids.length, 6, 'two NATS servers, two cores, two edges');
    assert.ok(marker);
    assert.ok(marked(`MCPGW_CLUSTER_RUN=${marker}`).length >= 3, 'the three backends run');

    // `everything` is served only in region b: a's edge learns b's core from the bus, then forwards.
    // (On a loaded machine a nats-server 2.9 mirror can miss b's first heartbeats until it is rebuilt,
    // at most once a minute: hence the long wait.)
    const end = Date.now() + 90_000;
    for (;;) {
      try {
        client = await connectSdk('v2', `${edgeA}/servers/everything/mcp`);
        break;
      } catch (err) {
        if (Date.now() > end) throw new Error(`${String(err)}\ncluster output:\n${out}`, { cause: err });
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    const r = await client.callTool({ name: 'echo', arguments: { message: 'across regions' } });
    assert.match(JSON.stringify(r.content), /Echo: across regions/);
    await client.close();
    client = undefined;

    cluster.kill('SIGINT');
    assert.equal(await exited(cluster), 0, out);
    assert.match(out, /cluster stopped/);
    assert.deepEqual(
      pids.filter((p) => alive(p)),
      [],
      'every gateway and NATS server is gone',
    );
    assert.deepEqual(marked(`MCPGW_CLUSTER_RUN=${marker}`), [], 'no backend outlived the cluster');
  });

  test('without nats-server on PATH it says what is missing and exits 2', async () => {
    const c = spawn(process.execPath, [CLUSTER], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: dirname(process.execPath) },
    });
    let err = '';
    c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    assert.equal(await exited(c), 2);
    assert.match(err, /needs nats-server .* on PATH/);
  });
});
