/**
 * `npm run bench`: the gateway's overhead as ratios against a direct connection measured in the same run.
 *
 * HTTP:  fast-http backend directly  vs  through a bare hop (node:http + undici, the floor)  vs  through mcpgw
 *        (/servers/fasthttp/mcp).
 * stdio: fast-stdio backend through mcpgw (/servers/fast/mcp)  vs  through mcp-proxy (/mcp).
 *
 * Every process under test runs as a separate child; the load generator runs here. For each concurrency,
 * the targets are measured in turn (A, B, C, A, B, C, ...) for a few rounds, and the median per target is
 * reported. Results go to stdout and to bench/results/latest.md and latest.json.
 *
 *   node dist/bench/run.js [--only http,stdio,direct,bare-hop,gateway,gateway-http,gateway-stdio,mcp-proxy]
 *                          [--duration 4] [--warmup 1] [--rounds 3] [--concurrency 1,16,64]
 *                          [--protocol-version 2025-11-25] [--out bench/results]
 *                          [--gateway-main dist/cli/main.js] [--mcp-proxy-arg=--no-eventStore ...]
 *
 * Exit status: 0 when every selected scenario ran without error; 1 when any failed or was unavailable (the
 * figures that could be measured are still printed and written).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type LoadResult, runLoad } from './loadgen.js';
import {
  type Child,
  childPids,
  cpuMs,
  freePort,
  isStopping,
  spawnChild,
  stopAll,
  stopChild,
  waitForHttp,
  waitForListening,
} from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const node = process.execPath;
const backendJs = (name: string): string => join(here, 'backends', `${name}.js`);

type TargetKey = 'direct' | 'bare-hop' | 'gateway-http' | 'gateway-stdio' | 'mcp-proxy';

interface Target {
  key: TargetKey;
  group: 'HTTP' | 'stdio';
  label: string;
  url?: string;
  /** The process between the load generator and the backend, if any. */
  front?: Child;
  /** The backend process's pid (for CPU accounting). */
  backendPid?: () => number | undefined;
  /** Why it could not be measured at all. */
  unavailable?: string;
  /** Why measurement stopped (errors during a run). */
  failed?: string;
}

interface RunRecord extends LoadResult {
  target: TargetKey;
  round: number;
  frontCpuMsPerReq: number | undefined;
  backendCpuMsPerReq: number | undefined;
  loadgenCpuMsPerReq: number | undefined;
}

interface Summary {
  target: TargetKey;
  concurrency: number;
  runs: number;
  p50: number;
  p99: number;
  rps: number;
  frontCpuMsPerReq: number | undefined;
  backendCpuMsPerReq: number | undefined;
  loadgenCpuMsPerReq: number | undefined;
  kinds: string;
}

const ALL: TargetKey[] = ['direct', 'bare-hop', 'gateway-http', 'gateway-stdio', 'mcp-proxy'];
const ALIASES: Record<string, TargetKey[]> = {
  http: ['direct', 'bare-hop', 'gateway-http'],
  stdio: ['gateway-stdio', 'mcp-proxy'],
  gateway: ['gateway-http', 'gateway-stdio'],
  mcpgw: ['gateway-http', 'gateway-stdio'],
  direct: ['direct'],
  'bare-hop': ['bare-hop'],
  bare: ['bare-hop'],
  hop: ['bare-hop'],
  'gateway-http': ['gateway-http'],
  'gateway-stdio': ['gateway-stdio'],
  'mcp-proxy': ['mcp-proxy'],
  all: ALL,
};

function usage(msg: string): never {
  process.stderr.write(
    `${msg}\nusage: node dist/bench/run.js [--only ${Object.keys(ALIASES).join(',')}] [--duration S] ` +
      `[--warmup S] [--rounds N] [--concurrency 1,16,64] [--protocol-version V] [--out DIR] ` +
      `[--gateway-main FILE] [--mcp-proxy-arg=ARG ...]\n`,
  );
  process.exit(2);
}

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string', multiple: true },
    scenario: { type: 'string', multiple: true },
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,16,64' },
    'protocol-version': { type: 'string', default: '2025-11-25' },
    out: { type: 'string', default: join(root, 'bench', 'results') },
    'gateway-main': { type: 'string', default: join(root, 'dist', 'cli', 'main.js') },
    'mcp-proxy-arg': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) usage('mcpgw benchmark');

const selectors = [...(opt.only ?? []), ...(opt.scenario ?? [])].flatMap((s) => s.split(','));
const selected = new Set<TargetKey>();
for (const s of selectors.length > 0 ? selectors : ['all']) {
  const keys = ALIASES[s.trim()];
  if (!keys) usage(`unknown scenario "${s}"`);
  for (const k of keys) selected.add(k);
}
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);
if (!(durationMs > 0) || !(warmupMs >= 0) || !(rounds >= 1) || concurrencies.some((c) => !(c >= 1))) {
  usage('bad --duration, --warmup, --rounds or --concurrency');
}
const protocolVersion = opt['protocol-version'];

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const errMsg = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The first descendant of `pid` whose command line mentions `needle`. */
function findDescendant(pid: number, needle: string, depth = 3): number | undefined {
  for (const c of childPids(pid)) {
    if (cmdline(c).includes(needle)) return c;
    if (depth > 1) {
      const d = findDescendant(c, needle, depth - 1);
      if (d !== undefined) return d;
    }
  }
  return undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------------------------------------------------
// Set-up

const targets = new Map<TargetKey, Target>();
const def = (key: TargetKey, group: Target['group'], label: string): Target => {
  const t: Target = { key, group, label };
  if (selected.has(key)) targets.set(key, t);
  return t;
};
const direct = def('direct', 'HTTP', 'direct (fast-http)');
const bareHop = def('bare-hop', 'HTTP', 'bare hop → fast-http');
const gwHttp = def('gateway-http', 'HTTP', 'mcpgw → fast-http');
const gwStdio = def('gateway-stdio', 'stdio', 'mcpgw → fast-stdio');
const mcpProxy = def('mcp-proxy', 'stdio', 'mcp-proxy → fast-stdio');
const needGateway = selected.has('gateway-http') || selected.has('gateway-stdio');
let tmpDir: string | undefined;
let mcpProxyVersion = 'unknown';

async function setUp(): Promise<void> {
  for (const f of ['fast-http', 'fast-stdio', 'bare-hop']) {
    if (!existsSync(backendJs(f))) throw new Error(`${backendJs(f)} is missing: build first (npm run build)`);
  }

  let fastHttpUrl: string | undefined;
  let fastHttp: Child | undefined;
  if (selected.has('direct') || selected.has('bare-hop') || needGateway) {
    fastHttp = spawnChild('fast-http', node, [backendJs('fast-http'), '--port', '0']);
    fastHttpUrl = await waitForListening(fastHttp);
    const pid = fastHttp.pid;
    direct.url = fastHttpUrl;
    direct.backendPid = () => pid;
    bareHop.backendPid = () => pid;
    gwHttp.backendPid = () => pid;
    log(`fast-http backend: ${fastHttpUrl} (pid ${pid})`);
  }

  if (selected.has('bare-hop') && fastHttpUrl) {
    const maxConc = Math.max(...concurrencies);
    const hop = spawnChild('bare-hop', node, [
      backendJs('bare-hop'),
      '--port',
      '0',
      '--target',
      fastHttpUrl,
      '--connections',
      String(Math.max(maxConc, 1)),
    ]);
    const hopUrl = await waitForListening(hop);
    bareHop.front = hop;
    bareHop.url = `${hopUrl}${new URL(fastHttpUrl).pathname}`;
    log(`bare hop: ${bareHop.url} (pid ${hop.pid})`);
  }

  if (selected.has('mcp-proxy')) {
    const bin = join(root, 'node_modules', 'mcp-proxy', 'dist', 'bin', 'mcp-proxy.mjs');
    try {
      if (!existsSync(bin)) throw new Error(`${bin} not found (is the mcp-proxy devDependency installed?)`);
      mcpProxyVersion = (
        JSON.parse(readFileSync(join(root, 'node_modules', 'mcp-proxy', 'package.json'), 'utf8')) as {
          version: string;
        }
      ).version;
      const port = await freePort();
      const proxy = spawnChild('mcp-proxy', node, [
        bin,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--server',
        'stream',
        ...opt['mcp-proxy-arg'],
        '--',
        node,
        backendJs('fast-stdio'),
      ]);
      mcpProxy.front = proxy;
      mcpProxy.url = `http://127.0.0.1:${port}/mcp`;
      // It connects to its stdio backend before it listens: any HTTP answer means ready.
      await waitForHttp(proxy, mcpProxy.url, (s) => s > 0 && s < 500, 30_000);
      const ppid = proxy.pid;
      mcpProxy.backendPid = () => findDescendant(ppid, 'fast-stdio');
      log(`mcp-proxy ${mcpProxyVersion}: ${mcpProxy.url} (pid ${proxy.pid})`);
    } catch (err) {
      mcpProxy.unavailable = `mcp-proxy did not start: ${errMsg(err)}${mcpProxy.front ? `\n${mcpProxy.front.tail()}` : ''}`;
      if (mcpProxy.front) await stopChild(mcpProxy.front);
      mcpProxy.front = undefined;
    }
  }

  if (needGateway && fastHttpUrl) {
    const main = resolve(opt['gateway-main']);
    let gw: Child | undefined;
    try {
      if (!existsSync(main)) throw new Error(`${main} does not exist (the gateway is not built)`);
      tmpDir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-'));
      const port = await freePort();
      const config = [
        'role: single',
        'region: local',
        `listen: { host: 127.0.0.1, port: ${port} }`,
        'auth: { mode: none }',
        'log: { level: warn }',
        'servers:',
        '  - name: fast',
        '    transport: stdio',
        `    command: ${JSON.stringify(node)}`,
        `    args: [${JSON.stringify(backendJs('fast-stdio'))}]`,
        '  - name: fasthttp',
        '    transport: streamable-http',
        `    url: ${JSON.stringify(fastHttpUrl)}`,
        '',
      ].join('\n');
      const file = join(tmpDir, 'mcpgw.yaml');
      writeFileSync(file, config);
      gw = spawnChild('mcpgw', node, [main, 'start', '--config', file], root);
      await waitForHttp(gw, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
      const gpid = gw.pid;
      gwHttp.front = gw;
      gwStdio.front = gw;
      gwHttp.url = `http://127.0.0.1:${port}/servers/fasthttp/mcp`;
      gwStdio.url = `http://127.0.0.1:${port}/servers/fast/mcp`;
      gwStdio.backendPid = () => findDescendant(gpid, 'fast-stdio');
      log(`mcpgw: http://127.0.0.1:${port} (pid ${gw.pid}), config ${file}`);
    } catch (err) {
      const why = `the gateway could not be started: ${errMsg(err)}${gw ? `\n--- mcpgw output ---\n${gw.tail().trim()}` : ''}`;
      gwHttp.unavailable = why;
      gwStdio.unavailable = why;
      if (gw) await stopChild(gw);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Measurement

const records: RunRecord[] = [];

async function measure(t: Target, concurrency: number, round: number): Promise<void> {
  if (!t.url) return;
  const front = t.front;
  let frontStart: number | undefined;
  let backStart: number | undefined;
  let frontCpu: number | undefined;
  let backCpu: number | undefined;
  let backendPid: number | undefined;
  let loadStart: NodeJS.CpuUsage | undefined;
  let loadCpu: number | undefined;
  const res = await runLoad({
    url: t.url,
    concurrency,
    durationMs,
    warmupMs,
    protocolVersion,
    onMeasureStart: () => {
      loadStart = process.cpuUsage();
      frontStart = front ? cpuMs(front.pid) : undefined;
      backendPid = t.backendPid?.();
      backStart = backendPid !== undefined ? cpuMs(backendPid) : undefined;
    },
    onMeasureEnd: () => {
      const f = front ? cpuMs(front.pid) : undefined;
      const b = backendPid !== undefined ? cpuMs(backendPid) : undefined;
      frontCpu = f !== undefined && frontStart !== undefined ? f - frontStart : undefined;
      if (loadStart) {
        const u = process.cpuUsage(loadStart);
        loadCpu = (u.user + u.system) / 1000;
      }
      backCpu = b !== undefined && backStart !== undefined ? b - backStart : undefined;
    },
  });
  const rec: RunRecord = {
    ...res,
    target: t.key,
    round,
    frontCpuMsPerReq: frontCpu !== undefined && res.requests > 0 ? frontCpu / res.requests : undefined,
    backendCpuMsPerReq: backCpu !== undefined && res.requests > 0 ? backCpu / res.requests : undefined,
    loadgenCpuMsPerReq: loadCpu !== undefined && res.requests > 0 ? loadCpu / res.requests : undefined,
  };
  if (isStopping()) return;
  records.push(rec);
  const line =
    `  ${t.key.padEnd(14)} c=${String(concurrency).padStart(2)} round ${round}: ` +
    `p50 ${res.p50.toFixed(3)} ms  p99 ${res.p99.toFixed(3)} ms  ${res.rps.toFixed(0)} req/s` +
    (res.errors > 0 ? `  ERRORS ${res.errors}` : '');
  log(line);
  if (res.errors > 0 || res.requests === 0 || front?.hasExited()) {
    const why =
      `${res.errors} error(s) at concurrency ${concurrency}, round ${round}` +
      (front?.hasExited() ? ` (${front.name} exited)` : '') +
      (res.errorSamples.length > 0 ? `:\n    ${res.errorSamples.join('\n    ')}` : '') +
      (res.requests === 0 && res.errors === 0 ? ': no request completed in the measured window' : '');
    t.failed = why;
    log(`\n!!!!! ${t.label} FAILED: ${why}\n!!!!! (no further runs of ${t.key})\n`);
  }
}

function summarize(): Summary[] {
  const out: Summary[] = [];
  for (const t of targets.values()) {
    for (const c of concurrencies) {
      const rs = records.filter(
        (r) => r.target === t.key && r.concurrency === c && r.errors === 0 && r.requests > 0,
      );
      if (rs.length === 0) continue;
      const opt = (xs: (number | undefined)[]): number | undefined => {
        const ok = xs.filter((x): x is number => x !== undefined);
        return ok.length > 0 ? median(ok) : undefined;
      };
      const json = rs.reduce((a, r) => a + r.json, 0);
      const sse = rs.reduce((a, r) => a + r.sse, 0);
      out.push({
        target: t.key,
        concurrency: c,
        runs: rs.length,
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        rps: median(rs.map((r) => r.rps)),
        frontCpuMsPerReq: opt(rs.map((r) => r.frontCpuMsPerReq)),
        backendCpuMsPerReq: opt(rs.map((r) => r.backendCpuMsPerReq)),
        loadgenCpuMsPerReq: opt(rs.map((r) => r.loadgenCpuMsPerReq)),
        kinds: json > 0 && sse > 0 ? 'json+sse' : sse > 0 ? 'sse' : 'json',
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Report

const ms = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : x < 10 ? x.toFixed(3) : x.toFixed(1);
const signedMs = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : `${x >= 0 ? '+' : '−'}${ms(Math.abs(x))}`;
const ratio = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : `${x.toFixed(2)}×`;
const int = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : Math.round(x).toString();

interface Ratios {
  concurrency: number;
  bareHopP50AddedMs?: number;
  gatewayP50AddedMs?: number;
  gatewayOverBareHopP50Ms?: number;
  bareHopOverDirectRps?: number;
  gatewayOverDirectRps?: number;
  gatewayStdioP50MinusMcpProxyMs?: number;
  gatewayOverMcpProxyRps?: number;
}

function ratiosOf(sums: Summary[]): Ratios[] {
  const get = (k: TargetKey, c: number): Summary | undefined =>
    sums.find((s) => s.target === k && s.concurrency === c);
  return concurrencies.map((c) => {
    const d = get('direct', c);
    const h = get('bare-hop', c);
    const g = get('gateway-http', c);
    const gs = get('gateway-stdio', c);
    const p = get('mcp-proxy', c);
    const r: Ratios = { concurrency: c };
    if (d && h) {
      r.bareHopP50AddedMs = h.p50 - d.p50;
      r.bareHopOverDirectRps = h.rps / d.rps;
    }
    if (d && g) {
      r.gatewayP50AddedMs = g.p50 - d.p50;
      r.gatewayOverDirectRps = g.rps / d.rps;
    }
    if (h && g) r.gatewayOverBareHopP50Ms = g.p50 - h.p50;
    if (gs && p) {
      r.gatewayStdioP50MinusMcpProxyMs = gs.p50 - p.p50;
      r.gatewayOverMcpProxyRps = gs.rps / p.rps;
    }
    return r;
  });
}

function report(sums: Summary[], ratios: Ratios[], startedAt: Date, elapsedS: number): string {
  const cpus = os.cpus();
  const L: string[] = [];
  L.push(`# mcpgw benchmark`);
  L.push('');
  L.push(
    `${startedAt.toISOString()} · Node ${process.version} · ${os.platform()} ${os.arch()} · ` +
      `${cpus.length} CPU(s) (${cpus[0]?.model.trim() ?? '?'}) · loopback`,
  );
  L.push(
    `${rounds} round(s) per point, median reported · ${opt.warmup} s warm-up + ${opt.duration} s measured per run · ` +
      `targets alternate within each round · MCP ${protocolVersion} · tools/call echo · took ${elapsedS.toFixed(0)} s`,
  );
  L.push('');
  L.push('## Latency and throughput');
  L.push('');
  L.push(
    '| transport | path | conc | p50 ms | p99 ms | req/s | proxy CPU ms/req | backend CPU ms/req | ' +
      'loadgen CPU ms/req | answers |',
  );
  L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|---|');
  for (const t of targets.values()) {
    for (const c of concurrencies) {
      const s = sums.find((x) => x.target === t.key && x.concurrency === c);
      if (!s) {
        const why = t.unavailable ? 'unavailable' : t.failed ? 'FAILED' : 'not measured';
        L.push(`| ${t.group} | ${t.label} | ${c} | ${why} | | | | | | |`);
        continue;
      }
      L.push(
        `| ${t.group} | ${t.label} | ${c} | ${ms(s.p50)} | ${ms(s.p99)} | ${int(s.rps)} | ` +
          `${t.front ? ms(s.frontCpuMsPerReq) : '—'} | ${ms(s.backendCpuMsPerReq)} | ` +
          `${ms(s.loadgenCpuMsPerReq)} | ${s.kinds} |`,
      );
    }
  }
  L.push('');
  L.push('## Overhead');
  L.push('');
  L.push(
    '| conc | bare hop p50 added (ms) | mcpgw p50 added (ms) | mcpgw − bare hop p50 (ms) | ' +
      'bare hop / direct req/s | mcpgw / direct req/s | stdio: mcpgw − mcp-proxy p50 (ms) | ' +
      'stdio: mcpgw / mcp-proxy req/s |',
  );
  L.push('|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of ratios) {
    L.push(
      `| ${r.concurrency} | ${signedMs(r.bareHopP50AddedMs)} | ${signedMs(r.gatewayP50AddedMs)} | ` +
        `${signedMs(r.gatewayOverBareHopP50Ms)} | ${ratio(r.bareHopOverDirectRps)} | ` +
        `${ratio(r.gatewayOverDirectRps)} | ${signedMs(r.gatewayStdioP50MinusMcpProxyMs)} | ` +
        `${ratio(r.gatewayOverMcpProxyRps)} |`,
    );
  }
  L.push('');
  L.push(
    '"added" = p50 through the hop minus p50 direct, same run. Proxy CPU = user+system CPU time of the ' +
      'process in the middle (bare hop, mcpgw or mcp-proxy) over the measured window, per request; backend ' +
      'CPU likewise for the fast backend, loadgen CPU for the load generator (which shares the machine). ' +
      `mcp-proxy ${mcpProxyVersion}: \`--server stream${opt['mcp-proxy-arg'].map((a) => ` ${a}`).join('')}\`` +
      (opt['mcp-proxy-arg'].length === 0 ? ', otherwise its defaults (event store on).' : '.'),
  );
  const problems = [...targets.values()].filter((t) => t.unavailable || t.failed);
  if (problems.length > 0) {
    L.push('');
    L.push('## Not measured');
    L.push('');
    const seen = new Set<string>();
    for (const t of problems) {
      const why = t.unavailable ?? t.failed ?? '';
      const key = `${t.unavailable ? 'u' : 'f'}${why}`;
      const first = !seen.has(key);
      seen.add(key);
      L.push(
        `- **${t.label}**: ${t.unavailable ? 'unavailable' : 'FAILED'}${first ? '' : ' (same reason as above)'}`,
      );
      if (first) {
        L.push('');
        L.push('  ```');
        for (const line of why.split('\n').slice(0, 40)) L.push(`  ${line}`);
        L.push('  ```');
      }
    }
  }
  L.push('');
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const startedAt = new Date();
  const t0 = Date.now();
  const order = [...targets.values()];
  const est = order.length * concurrencies.length * rounds * ((durationMs + warmupMs) / 1000 + 0.4);
  log(
    `mcpgw bench: ${order.map((t) => t.key).join(', ')} × c=${concurrencies.join(',')} × ${rounds} round(s); ` +
      `about ${Math.ceil(est / 60)} min`,
  );
  await setUp();
  for (const t of order) {
    if (t.unavailable) log(`\n***** ${t.label}: UNAVAILABLE *****\n${t.unavailable}\n`);
  }
  for (const c of concurrencies) {
    for (let r = 1; r <= rounds; r++) {
      for (const t of order) {
        if (t.unavailable || t.failed) continue;
        await measure(t, c, r);
        await new Promise((res) => setTimeout(res, 200));
      }
    }
  }
  const elapsed = (Date.now() - t0) / 1000;
  const sums = summarize();
  const ratios = ratiosOf(sums);
  const md = report(sums, ratios, startedAt, elapsed);
  process.stdout.write(`\n${md}`);

  const outDir = resolve(opt.out);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'latest.md'), md);
  writeFileSync(
    join(outDir, 'latest.json'),
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        elapsedSeconds: elapsed,
        environment: {
          node: process.version,
          platform: `${os.platform()} ${os.arch()}`,
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model.trim(),
          mcpProxyVersion,
        },
        parameters: {
          durationMs,
          warmupMs,
          rounds,
          concurrencies,
          protocolVersion,
          targets: order.map((t) => t.key),
        },
        summary: sums,
        ratios,
        problems: order
          .filter((t) => t.unavailable || t.failed)
          .map((t) => ({ target: t.key, unavailable: t.unavailable, failed: t.failed })),
        runs: records,
      },
      null,
      2,
    )}\n`,
  );
  log(`\nwritten: ${join(outDir, 'latest.md')} and latest.json`);

  const bad = order.filter((t) => t.unavailable || t.failed);
  if (bad.length > 0) {
    log(
      `\nBENCH INCOMPLETE: ${bad.map((t) => `${t.key} ${t.unavailable ? 'unavailable' : 'FAILED'}`).join(', ')}`,
    );
    return 1;
  }
  return 0;
}

let code: number;
try {
  code = await main();
} catch (err) {
  log(`\nBENCH FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  code = 1;
} finally {
  await stopAll();
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
}
process.exit(code);
