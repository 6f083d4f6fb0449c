/**
 * A rolling restart under load fails no request. Two edges and two cores run as separate processes
 * (`mcpgw start`), sessions in the real Redis under a unique prefix, so any edge serves any session and
 * any core continues it. Real SDK clients (v1 and v2) call a tool without pause through a balancer that,
 * like a Kubernetes Service, only sends to edges whose /readyz is 200 and retries only a refused
 * connection. Every edge, then every core, is restarted in turn (SIGTERM, exit, start again, ready) while
 * the calls go on (some of them longer than the drain delay, so in flight when a node stops accepting):
 * not one call fails, and the calls were spread over every edge and every core.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { collectOutput, type Output } from '../helpers/output.js';
import { makeSigningKey } from '../helpers/pki.js';
import { startReadyBalancer, type ReadyBalancer } from '../helpers/ready-balancer.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const COUNTING = `${ROOT}dist/test/fixtures/counting-http.js`;
const CLIENTS = 6;
/** Longer than the balancer's probe period (100 ms) several times over, as the runbook asks. */
const DRAIN_DELAY_MS = 1_500;

interface Node {
  name: string;
  file: string;
  port: number;
  child: ChildProcess;
  out: Output;
}

describe('rolling restart of edges and cores under load', { timeout: 240_000 }, () => {
  const prefix = `mcpgw-test-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-rolling-'));
  const backends: ChildProcess[] = [];
  const backendUrls: string[] = [];
  const nodes: Node[] = [];
  let lb: ReadyBalancer;
  let redis: Redis;

  async function start(name: string, port: number, doc: object): Promise<Node> {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(doc));
    const child = spawn(process.execPath, [MAIN, 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const node: Node = { name, file, port, child, out: collectOutput(child) };
    await waitReady(node);
    return node;
  }

  async function waitReady(node: Node): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (node.child.exitCode !== null)
        throw new Error(`${node.name} exited: ${node.out.lines().slice(-20).join('\n')}`);
      const ok = await fetch(`http://127.0.0.1:${node.port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline)
        throw new Error(`${node.name} not ready: ${node.out.lines().slice(-20).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM, wait for a clean exit, start the same config again, wait until it is ready. */
  async function restart(i: number): Promise<void> {
    const old = nodes[i]!;
    const exited = new Promise<number | null>((r) => old.child.once('exit', (code) => r(code)));
    old.child.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, `${old.name} exit status; output:\n${old.out.lines().slice(-20).join('\n')}`);
    assert.ok(
      old.out.lines().some((l) => /"msg":"drained"/.test(l)),
      `${old.name} drained before closing:\n${old.out.lines().slice(-20).join('\n')}`,
    );
    const child = spawn(process.execPath, [MAIN, 'start', '--config', old.file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const node: Node = { ...old, child, out: collectOutput(child) };
    nodes[i] = node;
    await waitReady(node);
  }

  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.ping().catch((err: unknown) => {
      throw new Error(`this test needs a real Redis at ${REDIS_URL} (set MCPGW_TEST_REDIS_URL): ${err}`);
    });
    const key = makeSigningKey(dir, 'edge-signing');
    // One backend per core, so that each backend's count says how many calls its core served.
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      backends.push(await spawnUntil(process.execPath, [COUNTING, '--port', String(port)], /listening/));
      backendUrls.push(`http://127.0.0.1:${port}`);
    }
    const shared = {
      region: 'eu',
      store: { kind: 'memory' },
      log: { level: 'info' },
      sessions: { store: 'redis' },
      redis: { url: REDIS_URL, keyPrefix: prefix },
      lifecycle: { drainDelayMs: DRAIN_DELAY_MS, drainTimeoutMs: 30_000 },
    };
    const corePorts = [await freePort(), await freePort()];
    const edgePorts = [await freePort(), await freePort()];
    const cores = await Promise.all(
      corePorts.map((port, i) =>
        start(`core-${i + 1}`, port, {
          ...shared,
          role: 'core',
          listen: { host: '127.0.0.1', port },
          internal: { id: `core-${i + 1}`, trustedKeys: [key.pub] },
          servers: [{ name: 'counter', transport: 'streamable-http', url: `${backendUrls[i]}/mcp` }],
        }),
      ),
    );
    const edges = await Promise.all(
      edgePorts.map((port, i) =>
        start(`edge-${i + 1}`, port, {
          ...shared,
          role: 'edge',
          listen: { host: '127.0.0.1', port },
          auth: { mode: 'none' },
          internal: { id: 'edge-eu', signingKey: key.priv },
          cores: corePorts.map((p, c) => ({
            region: 'eu',
            id: `core-${c + 1}`,
            url: `http://127.0.0.1:${p}`,
          })),
        }),
      ),
    );
    nodes.push(...edges, ...cores);
    lb = await startReadyBalancer(edgePorts.map((p) => `http://127.0.0.1:${p}`));
  });

  after(async () => {
    await lb?.close();
    await Promise.all([...nodes.map((n) => stopChild(n.child)), ...backends.map((b) => stopChild(b))]);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every edge and every core restarted in turn while clients call tools: zero failed calls', async () => {
    const clients: SdkClient[] = [];
    for (let i = 0; i < CLIENTS; i++)
      clients.push(await connectSdk(i % 2 === 0 ? 'v1' : 'v2', `${lb.url}/servers/counter/mcp`));
    const stats = () =>
      Promise.all(
        backendUrls.map((u) => fetch(`${u}/stats`).then((r) => r.json() as Promise<{ calls: number }>)),
      );
    const before = await stats();
    const failures: string[] = [];
    let ok = 0;
    let running = true;
    const loops = clients.map(async (c, n) => {
      while (running) {
        // The first client's calls outlast the drain delay: some are in flight when a node stops accepting.
        const ms = n === 0 ? 1_500 + Math.floor(Math.random() * 1_500) : 50 + Math.floor(Math.random() * 200);
        try {
          const r = await c.callTool({ name: 'slow', arguments: { ms } });
          if (r.isError || r.content?.[0]?.text !== `slept ${ms}`)
            failures.push(`client ${n}: unexpected result ${JSON.stringify(r)}`);
          else ok++;
        } catch (err) {
          failures.push(`client ${n}: ${(err as Error).message}`);
        }
      }
    });
    try {
      // Load first, then each edge and each core in turn, as a Deployment's rolling update does.
      await new Promise((r) => setTimeout(r, 1_000));
      for (let i = 0; i < nodes.length; i++) {
        const atStart = ok;
        await restart(i);
        // Calls go on through each restart (none of them waits for the restart to end).
        assert.ok(ok - atStart > 0, `calls went on while ${nodes[i]!.name} restarted`);
      }
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      running = false;
      await Promise.all(loops);
    }
    const after = await stats();
    await Promise.all(clients.map((c) => c.close().catch(() => {})));

    assert.deepEqual(failures, [], `failed calls: ${failures.length} of ${failures.length + ok}`);
    assert.deepEqual(lb.failed, [], 'requests the balancer could not deliver');
    assert.ok(ok >= 100, `a steady load ran (${ok} calls)`);
    // The edges heard of each core's drain at once (its events stream), not at their next info poll.
    for (const edge of nodes.slice(0, 2))
      assert.ok(
        edge.out.lines().filter((l) => /core draining; new calls go to the other cores/.test(l)).length >= 2,
        `${edge.name} was told of both cores' drains`,
      );
    // Spread over the replicas: each edge answered calls, each core (its backend) served some.
    const perEdge = [0, 1].map(
      (i) => lb.forwarded.filter((f) => f.upstream === i && f.rpcMethod === 'tools/call').length,
    );
    const perCore = after.map((s, i) => s.calls - before[i]!.calls);
    for (const [i, n] of perEdge.entries()) assert.ok(n >= ok / 20, `edge ${i + 1} answered ${n} of ${ok}`);
    for (const [i, n] of perCore.entries()) assert.ok(n >= ok / 20, `core ${i + 1} served ${n} of ${ok}`);
    assert.equal(
      perCore.reduce((a, b) => a + b, 0),
      ok,
      'each successful call ran exactly once on a backend',
    );
    process.stdout.write(
      `# rolling restart: ${ok} calls, 0 failed; per edge ${perEdge.join('/')}, per core ${perCore.join('/')}; ` +
        `refused connections retried by the balancer: ${lb.retriedRefused}\n`,
    );
  });
});
