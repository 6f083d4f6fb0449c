/**
 * `node dist/bench/federation.js`: what federation costs on loopback, in one run over the bench's own
 * two-region NATS topology (a core per region, one edge in region a that discovers both from the bus):
 *
 *   same-region   SDK client -> edge a -> core a -> stdio backend     (tools/call, sequential)
 *   cross-region  SDK client -> edge a -> core b -> stdio backend     (the same, a server only b serves)
 *   failover      core a SIGKILLed: ms until a call of a server both regions serve succeeds again
 *
 * The cross-region hop's cost is `cross-region - same-region` p50 (target <= 1 ms). Registry convergence
 * between regions is measured by test/cluster/federation-registry.test.ts (docs/federation.md).
 *
 *   node dist/bench/federation.js [--calls 1000]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { freePort, ROOT, spawnUntil, stopChild } from '../test/helpers/net.js';
import { makeSigningKey } from '../test/helpers/pki.js';
import { connectSdk, type SdkClient } from '../test/helpers/sdk-clients.js';
import { startNatsTopology } from '../test/helpers/nats-cluster.js';

const { values: opt } = parseArgs({ options: { calls: { type: 'string', default: '1000' } } });
const calls = Number(opt.calls);
const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const stdio = (name: string, tools: string[]) => ({
  name,
  transport: 'stdio',
  command: process.execPath,
  args: [SCRIPTED],
  env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
});

const dir = mkdtempSync(join(tmpdir(), 'mcpgw-bench-fed-'));
const children: ChildProcess[] = [];
const topo = await startNatsTopology(['a', 'b']);
const key = makeSigningKey(dir, 'edge-signing');
const fed = (region: string, gatewayId: string) => ({
  bus: 'nats',
  natsUrls: [topo.server(region).url],
  regions: ['a', 'b'],
  gatewayId,
  // A 2.9 mirror created while its origin starts may deliver nothing live until re-read (docs/federation.md).
  antiEntropyMs: 2000,
  heartbeatMs: 200,
  downAfterMs: 2000,
});

async function spawnNode(name: string, doc: Record<string, unknown>): Promise<ChildProcess> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ store: { kind: 'memory' }, log: { level: 'warn' }, ...doc }));
  const child = await spawnUntil(
    process.execPath,
    [MAIN, 'start', '--config', file],
    /mcpgw listening|"level":30/,
  );
  children.push(child);
  if (process.env.FED_DEBUG)
    child.stdout!.on('data', (b: Buffer) => process.stderr.write(`[${name}] ${String(b).slice(0, 300)}\n`));
  return child;
}

function percentile(v: number[], p: number): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function timeCalls(c: SdkClient, tool: string): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 50; i++) await c.callTool({ name: tool, arguments: {} });
  const t: number[] = [];
  for (let i = 0; i < calls; i++) {
    const s = performance.now();
    await c.callTool({ name: tool, arguments: { i } });
    t.push(performance.now() - s);
  }
  return { p50: percentile(t, 50), p99: percentile(t, 99) };
}

try {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const core = (region: string, port: number, servers: object[]) =>
    spawnNode(`core-${region}`, {
      role: 'core',
      region,
      log: { level: 'info' },
      listen: { host: '127.0.0.1', port },
      internal: { id: `core-${region}`, trustedKeys: [key.pub] },
      servers,
      federation: fed(region, `core-${region}`),
    });
  const [coreA] = await Promise.all([
    core('a', ports[0]!, [stdio('near', ['t']), stdio('shared', ['t'])]),
    core('b', ports[1]!, [stdio('far', ['t']), stdio('shared', ['t'])]),
  ]);
  await spawnNode('edge-a', {
    role: 'edge',
    region: 'a',
    log: { level: 'info' },
    listen: { host: '127.0.0.1', port: ports[2] },
    internal: { id: 'edge-a', signingKey: key.priv },
    federation: fed('a', 'edge-a'),
  });
  const edge = `http://127.0.0.1:${ports[2]}`;
  const connect = async (server: string): Promise<SdkClient> => {
    for (let i = 0; ; i++)
      try {
        return await connectSdk('v2', `${edge}/servers/${server}/mcp`);
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
  };
  const near = await connect('near');
  const far = await connect('far');
  const same = await timeCalls(near, 't');
  const cross = await timeCalls(far, 't');

  const shared = await connect('shared');
  await shared.callTool({ name: 't', arguments: {} });
  const killed = performance.now();
  coreA!.kill('SIGKILL');
  let failoverMs = -1;
  while (failoverMs < 0 && performance.now() - killed < 10_000) {
    try {
      const c = await connectSdk('v2', `${edge}/servers/shared/mcp`);
      await c.callTool({ name: 't', arguments: {} });
      failoverMs = performance.now() - killed;
      await c.close();
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const r = (x: number) => Math.round(x * 1000) / 1000;
  console.log(
    JSON.stringify(
      {
        calls,
        sameRegion: { p50: r(same.p50), p99: r(same.p99) },
        crossRegion: { p50: r(cross.p50), p99: r(cross.p99) },
        crossRegionHopP50Ms: r(cross.p50 - same.p50),
        failoverMs: r(failoverMs),
      },
      null,
      2,
    ),
  );
  await Promise.all([near.close(), far.close(), shared.close()].map((p) => p.catch(() => {})));
} finally {
  await Promise.all(children.map((c) => stopChild(c)));
  await topo.close();
  rmSync(dir, { recursive: true, force: true });
}
