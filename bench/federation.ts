/**
 * `node dist/bench/federation.js`: what federation costs on loopback, in one run over the bench's own
 * two-region NATS topology (a core per region, one edge in region a that discovers both from the bus), all
 * on one fast-http backend, measured with the load generator (tools/call echo, raw JSON-RPC):
 *
 *   direct        load generator -> fast-http                                      (the baseline)
 *   same-region   -> edge a -> core a -> fast-http      (server `near`, only core a serves it)
 *   cross-region  -> edge a -> core b -> fast-http      (server `far`, only core b serves it)
 *
 * The targets alternate within each round; medians per target. The cross-region hop's cost is
 * `cross-region - same-region` p50 (target <= 1 ms). Then:
 *
 *   convergence   registry changes in region a until region b's capability index has them, over the same
 *                 NATS topology (two federation nodes in this process, as test/cluster/federation-registry
 *                 runs them; target p99 <= 100 ms)
 *   failover      core a SIGKILLed: ms until a fresh session on a server both regions serve (`shared`)
 *                 completes a call again through the edge
 *
 *   node dist/bench/federation.js [--duration 3] [--warmup 0.5] [--rounds 3] [--concurrency 1,16]
 *                                 [--changes 50] [--json FILE]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NatsBus } from '../shared/adapters/nats/federation-bus.js';
import { makeSigningKey } from '../test/helpers/pki.js';
import { startNatsTopology } from '../test/helpers/nats-cluster.js';
import { percentile, server, startTestGateway, until } from '../test/helpers/federation.js';
import { runLoad } from './loadgen.js';
import { type Child, freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const node = process.execPath;
const MAIN = join(root, 'dist', 'cli', 'main.js');

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '0.5' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,16' },
    changes: { type: 'string', default: '50' },
    json: { type: 'string' },
  },
});
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);
const changes = Number(opt.changes);
if (
  !(durationMs > 0) ||
  !(warmupMs >= 0) ||
  !(rounds >= 1) ||
  !(changes >= 1) ||
  concurrencies.some((c) => !(c >= 1))
) {
  process.stderr.write('bad --duration, --warmup, --rounds, --changes or --concurrency\n');
  process.exit(2);
}
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;

const dir = mkdtempSync(join(tmpdir(), 'mcpgw-bench-fed-'));
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

async function spawnGateway(name: string, port: number, doc: Record<string, unknown>): Promise<Child> {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      store: { kind: 'memory' },
      log: { level: 'warn' },
      listen: { host: '127.0.0.1', port },
      ...doc,
    }),
  );
  const child = spawnChild(name, node, [MAIN, 'start', '--config', file], root);
  await waitForHttp(child, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 60_000);
  return child;
}

/** Until a tools/call through `url` succeeds (the edge learns its cores from the bus). */
async function reachable(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await runLoad({ url, concurrency: 1, requests: 1, warmupMs: 0, timeoutMs: 2000 }).catch(
      (err: unknown) => ({ errors: 1, errorSamples: [String(err)] }),
    );
    if (res.errors === 0) return;
    if (Date.now() > deadline) throw new Error(`${url} not reachable: ${res.errorSamples.join('; ')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Registry convergence a -> b over the topology, as the registry test measures it. */
async function convergence(): Promise<{ p50: number; p99: number; max: number; n: number }> {
  const buses = [
    await NatsBus.connect({ servers: topo.server('a').url, name: 'bench-a' }),
    await NatsBus.connect({ servers: topo.server('b').url, name: 'bench-b' }),
  ];
  // Anti-entropy as the gateways above run it (the 2.9 mirror caveat); a change that only anti-entropy
  // delivers shows as a sample near 2000 ms.
  const opts = { regions: ['a', 'b'], heartbeatMs: 1000, downAfterMs: 3000, antiEntropyMs: 2000 };
  const a1 = await startTestGateway({ ...opts, bus: buses[0]!, region: 'a', id: 'bench-a1' });
  const b1 = await startTestGateway({ ...opts, bus: buses[1]!, region: 'b', id: 'bench-b1' });
  try {
    const index = b1.node.index;
    await until(index, () => index.regionStatus('a').state === 'up', 'region a up in b', 30_000);
    const samples: number[] = [];
    for (let i = 0; i < changes + 5; i++) {
      const tool = `tool${i}`;
      const t0 = performance.now();
      a1.servers = [server('maps', [tool])];
      await a1.node.publisher.refresh();
      await until(index, () => index.whoServes(`maps__${tool}`).length === 1, `maps__${tool} in b`);
      if (i >= 5) samples.push(performance.now() - t0); // the first few: JIT, consumers settling
    }
    return {
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      max: Math.max(...samples),
      n: samples.length,
    };
  } finally {
    await Promise.all([a1.node.close(), b1.node.close()]);
    await Promise.all(buses.map((b) => b.close()));
  }
}

try {
  const backend = spawnChild('fast-http', node, [join(here, 'backends', 'fast-http.js'), '--port', '0']);
  const backendUrl = await waitForListening(backend);
  const http = (name: string) => ({ name, transport: 'streamable-http', url: backendUrl });
  const [pa, pb, pe] = [await freePort(), await freePort(), await freePort()];
  const core = (region: string, port: number, servers: object[]) =>
    spawnGateway(`core-${region}`, port, {
      role: 'core',
      region,
      internal: { id: `core-${region}`, trustedKeys: [key.pub] },
      servers,
      federation: fed(region, `core-${region}`),
    });
  const [coreA] = await Promise.all([
    core('a', pa, [http('near'), http('shared')]),
    core('b', pb, [http('far'), http('shared')]),
  ]);
  await spawnGateway('edge-a', pe, {
    role: 'edge',
    region: 'a',
    internal: { id: 'edge-a', signingKey: key.priv },
    federation: fed('a', 'edge-a'),
  });
  const edge = `http://127.0.0.1:${pe}`;
  const targets = {
    direct: backendUrl,
    'same-region': `${edge}/servers/near/mcp`,
    'cross-region': `${edge}/servers/far/mcp`,
  };
  for (const url of Object.values(targets)) await reachable(url);
  await reachable(`${edge}/servers/shared/mcp`);
  log(`fast-http ${backendUrl}; cores a :${pa}, b :${pb}; edge a ${edge}`);

  type Key = keyof typeof targets;
  const runs: { target: Key; c: number; p50: number; p99: number; rps: number }[] = [];
  let errors = 0;
  for (const c of concurrencies)
    for (let round = 1; round <= rounds; round++)
      for (const [target, url] of Object.entries(targets) as [Key, string][]) {
        const res = await runLoad({ url, concurrency: c, durationMs, warmupMs });
        errors += res.errors;
        runs.push({ target, c, p50: res.p50, p99: res.p99, rps: res.rps });
        log(
          `  ${target.padEnd(12)} c=${c} round ${round}: p50 ${res.p50.toFixed(3)} ms  ${res.rps.toFixed(0)} req/s` +
            (res.errors ? `  ERRORS ${res.errors} ${res.errorSamples.join(' | ')}` : ''),
        );
      }
  const summary = concurrencies.flatMap((c) =>
    (Object.keys(targets) as Key[]).map((target) => {
      const rs = runs.filter((x) => x.target === target && x.c === c);
      return {
        target,
        concurrency: c,
        p50: r3(median(rs.map((x) => x.p50))),
        p99: r3(median(rs.map((x) => x.p99))),
        rps: Math.round(median(rs.map((x) => x.rps))),
      };
    }),
  );

  log('registry convergence ...');
  const conv = await convergence();

  log('failover: SIGKILL core a ...');
  const killed = performance.now();
  coreA.proc.kill('SIGKILL');
  let failoverMs = -1;
  while (failoverMs < 0 && performance.now() - killed < 15_000) {
    const res = await runLoad({
      url: `${edge}/servers/shared/mcp`,
      concurrency: 1,
      requests: 1,
      warmupMs: 0,
      timeoutMs: 2000,
    }).catch(() => ({ errors: 1 }));
    if (res.errors === 0) failoverMs = performance.now() - killed;
    else await new Promise((r) => setTimeout(r, 20));
  }

  const get = (t: Key, c: number) => summary.find((s) => s.target === t && s.concurrency === c)!;
  const out = {
    parameters: { durationMs, warmupMs, rounds, concurrencies, changes },
    summary,
    ratios: concurrencies.map((c) => ({
      concurrency: c,
      sameRegionP50AddedMs: r3(get('same-region', c).p50 - get('direct', c).p50),
      crossRegionP50AddedMs: r3(get('cross-region', c).p50 - get('direct', c).p50),
      crossRegionHopP50Ms: r3(get('cross-region', c).p50 - get('same-region', c).p50),
      sameRegionOverDirectRps: r3(get('same-region', c).rps / get('direct', c).rps),
      crossRegionOverDirectRps: r3(get('cross-region', c).rps / get('direct', c).rps),
    })),
    convergence: { p50: r3(conv.p50), p99: r3(conv.p99), max: r3(conv.max), changes: conv.n },
    failoverMs: r3(failoverMs),
    errors,
  };
  const md = [
    '| target | conc | p50 ms | p99 ms | req/s |',
    '| --- | --: | --: | --: | --: |',
    ...summary.map((s) => `| ${s.target} | ${s.concurrency} | ${s.p50} | ${s.p99} | ${s.rps} |`),
    '',
    ...out.ratios.map(
      (x) =>
        `- c=${x.concurrency}: same-region +${x.sameRegionP50AddedMs} ms p50 over direct, cross-region ` +
        `+${x.crossRegionP50AddedMs} ms (the cross-region hop itself ${x.crossRegionHopP50Ms} ms); ` +
        `throughput ${x.sameRegionOverDirectRps}x / ${x.crossRegionOverDirectRps}x of direct`,
    ),
    `- registry convergence a -> b over ${conv.n} changes: p50 ${out.convergence.p50} ms, p99 ${out.convergence.p99} ms`,
    `- failover (core a SIGKILLed, a call on a server both regions serve): ${failoverMs < 0 ? 'did not recover within 15 s' : `${out.failoverMs} ms`}`,
  ].join('\n');
  process.stdout.write(`${md}\n`);
  if (opt.json) writeFileSync(opt.json, `${JSON.stringify(out, null, 2)}\n`);
  process.exitCode = errors > 0 || failoverMs < 0 ? 1 : 0;
} catch (err) {
  log(`federation bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await stopAll();
  await topo.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(process.exitCode ?? 0);
