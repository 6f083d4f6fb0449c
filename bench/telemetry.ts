/**
 * What observability costs in throughput: gateways on the same fast-http backend and the same store, one
 * per setting: `off`, `on` (tracing at --sample-ratio, default 0.01 as in the config, exported over OTLP/HTTP
 * to a sink in this process; metrics; the audit trail, buffered and hash-chained), and optionally `tracing`, `metrics`,
 * `audit` alone. Measured in turn at each concurrency (the order reversed every other round) with the load
 * generator (tools/call echo on /servers/fasthttp/mcp). Reports req/s, p50, p99 and CPU per request per
 * setting, the on/off ratio (of the medians and per round) and the load average. Results go to stdout and
 * to bench/results/telemetry.md and telemetry.json. MCPGW_BENCH_PROFILE=<dir>: CPU profiles of the gateways.
 *
 *   node dist/bench/telemetry.js [--duration 4] [--warmup 1] [--prewarm 3] [--rounds 3] [--concurrency 64] [--pin]
 *                                [--settings off,on[,tracing,metrics,audit]] [--store postgres|embedded]
 *                                [--sample-ratio 0.01] [--out bench/results] [--gateway-main dist/cli/main.js]
 *
 * Exit status: 0 when every setting ran without error; 1 otherwise (what could be measured is still written).
 */
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type LoadResult, runLoad } from './loadgen.js';
import {
  type Child,
  commandCpuMs,
  cpuMs,
  freePort,
  spawnChild,
  stopAll,
  waitForHttp,
  waitForListening,
} from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const node = process.execPath;

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    prewarm: { type: 'string', default: '3' },
    pin: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    out: { type: 'string', default: join(root, 'bench', 'results') },
    'gateway-main': { type: 'string', default: join(root, 'dist', 'cli', 'main.js') },
    settings: { type: 'string', default: 'off,on' },
    store: { type: 'string', default: 'postgres' },
    'sample-ratio': { type: 'string', default: '0.01' },
  },
});
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const prewarmMs = Number(opt.prewarm) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);
const settings = opt.settings.split(',') as Setting[];
const auditStore = opt.store;
const sampleRatio = Number(opt['sample-ratio']);
if (!(sampleRatio >= 0 && sampleRatio <= 1))
  throw new Error(`--sample-ratio must be in [0, 1], not ${opt['sample-ratio']}`);
if (auditStore !== 'postgres' && auditStore !== 'embedded')
  throw new Error(`--store must be postgres or embedded, not ${auditStore}`);
const pgUrl = process.env.MCPGW_BENCH_PG_URL ?? 'postgres://root@127.0.0.1:5432/test';
const schema = `bench_tel_${process.pid}`;
/** The Postgres schema of a setting's gateway (a setting's `-` is not a schema name's character). */
const schemaOf = (s: Setting): string => `${schema}_${s.replaceAll('-', '_')}`;
const { Pool } = pg;
const log = (s: string): void => void process.stderr.write(`${s}\n`);

type Setting = 'off' | 'on' | 'tracing' | 'metrics' | 'audit' | 'no-tracing' | 'no-metrics' | 'no-audit';
interface Run extends LoadResult {
  setting: Setting;
  round: number;
  cpuMsPerReq: number | undefined;
  /** CPU of the Postgres server's processes per request (the audit writes; the store's other work). */
  pgCpuMsPerReq: number | undefined;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Every thread of `pid` onto `cpus` (taskset's list syntax). */
function pinProcess(pid: number | undefined, cpus: string): void {
  if (pid === undefined) throw new Error('--pin: a process without a pid');
  execFileSync('taskset', ['-a', '-pc', cpus, String(pid)], { stdio: 'ignore' });
}

/** A local OTLP/HTTP sink: takes every export (JSON), counts the bytes, answers 200. */
async function otlpSink(): Promise<{ url: string; bytes: () => number; close: () => void }> {
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/v1/traces`, bytes: () => bytes, close: () => server.close() };
}

/**
 * What a setting turns on. `off` and `on` are the pair the target is about; the others isolate one part
 * (`no-x`: all but x).
 */
const FEATURES: Record<Setting, { tracing: boolean; metrics: boolean; audit: boolean }> = {
  off: { tracing: false, metrics: false, audit: false },
  on: { tracing: true, metrics: true, audit: true },
  tracing: { tracing: true, metrics: false, audit: false },
  metrics: { tracing: false, metrics: true, audit: false },
  audit: { tracing: false, metrics: false, audit: true },
  'no-tracing': { tracing: false, metrics: true, audit: true },
  'no-metrics': { tracing: true, metrics: false, audit: true },
  'no-audit': { tracing: true, metrics: true, audit: false },
};

async function startGateway(
  setting: Setting,
  backendUrl: string,
  dir: string,
  otlpUrl: string,
): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const f = FEATURES[setting]!;
  const file = join(dir, `mcpgw-${setting}.yaml`);
  // Every setting has the same store (registry, vault) so that only the three features differ: the
  // real Postgres (a schema per setting) or the embedded PGlite in the gateway's process.
  const store =
    auditStore === 'postgres'
      ? `store: { kind: postgres, url: ${JSON.stringify(pgUrl)}, schema: ${schemaOf(setting)} }`
      : 'store: { kind: embedded }';
  writeFileSync(
    file,
    [
      'role: single',
      `listen: { host: 127.0.0.1, port: ${port} }`,
      'log: { level: warn }',
      store,
      `audit: { enabled: ${f.audit}, sink: postgres }`,
      'telemetry:',
      `  tracing: { enabled: ${f.tracing}, exporter: otlp, endpoint: ${JSON.stringify(otlpUrl)}, sampleRatio: ${sampleRatio} }`,
      `  metrics: { enabled: ${f.metrics} }`,
      'servers:',
      '  - name: fasthttp',
      '    transport: streamable-http',
      `    url: ${JSON.stringify(backendUrl)}`,
      '',
    ].join('\n'),
  );
  // MCPGW_BENCH_PROFILE=<dir>: each gateway writes a CPU profile there when it stops (node --cpu-prof).
  const prof = process.env.MCPGW_BENCH_PROFILE;
  const flags = prof ? ['--cpu-prof', `--cpu-prof-dir=${resolve(prof, setting)}`] : [];
  const child = spawnChild(
    `mcpgw-${setting}`,
    node,
    [...flags, resolve(opt['gateway-main']), 'start', '--config', file],
    root,
  );
  await waitForHttp(child, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
  return { child, url: `http://127.0.0.1:${port}/servers/fasthttp/mcp` };
}

async function main(): Promise<number> {
  for (const s of settings)
    if (!(s in FEATURES)) throw new Error(`unknown setting ${s} (${Object.keys(FEATURES).join(', ')})`);
  if (!settings.includes('off') || !settings.includes('on')) throw new Error('--settings needs off and on');
  const backendJs = join(here, 'backends', 'fast-http.js');
  if (!existsSync(backendJs)) throw new Error(`${backendJs} is missing: build first (npm run build)`);
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-telemetry-'));
  let sink: Awaited<ReturnType<typeof otlpSink>> | undefined;
  try {
    const backend = spawnChild('fast-http', node, [backendJs, '--port', '0']);
    const backendUrl = await waitForListening(backend);
    sink = await otlpSink();
    const gws = new Map<Setting, { child: Child; url: string }>();
    for (const s of settings) gws.set(s, await startGateway(s, backendUrl, dir, sink.url));
    // --pin: every thread of every gateway on the last CPU, this process (the load) and the backend on
    // the others, after the gateways have started (so that they chose their threads for the whole host).
    // On a 2-CPU machine this takes most of the scheduler's placement out of the figures: unpinned, a
    // gateway that differed from off only by modules loaded and never used came out 18 % faster in one
    // run and 1 % slower in the next; pinned, two gateways of one setting stayed within 2-4 %.
    if (opt.pin) {
      const cpus = os.availableParallelism();
      if (cpus < 2) throw new Error('--pin needs at least 2 CPUs');
      const rest = cpus === 2 ? '0' : `0-${cpus - 2}`;
      for (const g of gws.values()) pinProcess(g.child.pid, String(cpus - 1));
      pinProcess(backend.pid, rest);
      pinProcess(process.pid, rest);
    }
    // Each gateway is first loaded on its own for --prewarm seconds, not measured: without it the first
    // rounds measured code that V8 had not optimised yet (every setting's req/s rose over the first five
    // rounds of 0.3 s warm-up each, off from about 1,400 to 5,000-6,000).
    if (prewarmMs > 0)
      for (const s of settings)
        await runLoad({
          url: gws.get(s)!.url,
          concurrency: concurrencies[0]!,
          durationMs: prewarmMs,
          warmupMs: 0,
        });
    const runs: Run[] = [];
    let failed = false;
    for (const concurrency of concurrencies) {
      for (let round = 1; round <= rounds; round++) {
        // Every other round in reverse order (A B C, C B A, ...): no setting always runs right after
        // another one's load, or always first.
        const order = round % 2 ? settings : [...settings].reverse();
        for (const setting of order) {
          const g = gws.get(setting)!;
          let cpu0: number | undefined;
          let cpu: number | undefined;
          let pg0 = 0;
          let pgCpu: number | undefined;
          const res = await runLoad({
            url: g.url,
            concurrency,
            durationMs,
            warmupMs,
            onMeasureStart: () => {
              cpu0 = cpuMs(g.child.pid);
              if (auditStore === 'postgres') pg0 = commandCpuMs('postgres');
            },
            onMeasureEnd: () => {
              const c = cpuMs(g.child.pid);
              cpu = c !== undefined && cpu0 !== undefined ? c - cpu0 : undefined;
              if (auditStore === 'postgres') pgCpu = commandCpuMs('postgres') - pg0;
            },
          });
          if (res.errors > 0) failed = true;
          runs.push({
            ...res,
            setting,
            round,
            cpuMsPerReq: cpu !== undefined && res.requests > 0 ? cpu / res.requests : undefined,
            pgCpuMsPerReq: pgCpu !== undefined && res.requests > 0 ? pgCpu / res.requests : undefined,
          });
          log(
            `  telemetry ${setting.padEnd(7)} c=${concurrency} round ${round}: ${res.rps.toFixed(0)} req/s, ` +
              `p50 ${res.p50.toFixed(3)} ms, p99 ${res.p99.toFixed(3)} ms, ` +
              `CPU ${cpu !== undefined && res.requests ? (cpu / res.requests).toFixed(3) : 'n/a'} ms/req` +
              `${pgCpu !== undefined && res.requests ? `, Postgres ${(pgCpu / res.requests).toFixed(3)} ms/req` : ''}` +
              `${res.errors ? `, ERRORS ${res.errors}` : ''}`,
          );
        }
      }
    }
    const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
    const ok = (s: Setting, c: number) =>
      runs.filter((r) => r.setting === s && r.concurrency === c && r.errors === 0);
    const m = (s: Setting, c: number, get: (r: Run) => number | undefined) => {
      const xs = ok(s, c)
        .map(get)
        .filter((x): x is number => x !== undefined);
      return xs.length ? median(xs) : NaN;
    };
    /** The median over rounds of a setting's req/s divided by off's in the same round. */
    const roundRatio = (s: Setting, c: number) => {
      const xs: number[] = [];
      for (let round = 1; round <= rounds; round++) {
        const a = ok(s, c).find((r) => r.round === round);
        const b = ok('off', c).find((r) => r.round === round);
        if (a && b) xs.push(a.rps / b.rps);
      }
      return xs.length ? median(xs) : NaN;
    };
    const L = [
      '# mcpgw benchmark: tracing (OTLP to a local sink) + metrics + audit (buffered) on vs off',
      '',
      `${new Date().toISOString()} · Node ${process.version} · ${os.cpus().length} CPU(s) · load average ` +
        `${os
          .loadavg()
          .map((x) => x.toFixed(2))
          .join(
            ' ',
          )} · ${rounds} round(s), median · ${opt.warmup} s warm-up + ${opt.duration} s measured · ` +
        `tools/call echo via /servers/fasthttp/mcp · store ${auditStore} · sampleRatio ${sampleRatio}` +
        ` · ${opt.prewarm} s pre-warm per gateway${opt.pin ? ' · gateways pinned to the last CPU' : ''}`,
      '',
      '| conc | off req/s | on req/s | on/off | on/off per round | off p50 ms | on p50 ms | off p99 ms | on p99 ms | off CPU ms/req | on CPU ms/req |',
      '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ];
    const summary = concurrencies.map((c) => {
      const row = {
        concurrency: c,
        offRps: m('off', c, (r) => r.rps),
        onRps: m('on', c, (r) => r.rps),
        roundRatio: roundRatio('on', c),
        offP50: m('off', c, (r) => r.p50),
        onP50: m('on', c, (r) => r.p50),
        offP99: m('off', c, (r) => r.p99),
        onP99: m('on', c, (r) => r.p99),
        offCpu: m('off', c, (r) => r.cpuMsPerReq),
        onCpu: m('on', c, (r) => r.cpuMsPerReq),
      };
      L.push(
        `| ${c} | ${f(row.offRps, 0)} | ${f(row.onRps, 0)} | ${f(row.onRps / row.offRps)}× | ${f(row.roundRatio)}× | ` +
          `${f(row.offP50)} | ${f(row.onP50)} | ${f(row.offP99)} | ${f(row.onP99)} | ${f(row.offCpu)} | ${f(row.onCpu)} |`,
      );
      return row;
    });
    const parts = settings.filter((s) => s !== 'off' && s !== 'on');
    if (parts.length > 0) {
      L.push(
        '',
        'Each part on its own (CPU ms/req added: the setting minus off, medians):',
        '',
        '| conc | setting | req/s | /off per round | p50 ms | p99 ms | CPU ms/req | added CPU ms/req | Postgres CPU ms/req |',
        '|--:|--|--:|--:|--:|--:|--:|--:|--:|',
      );
      for (const c of concurrencies)
        for (const s of settings)
          L.push(
            `| ${c} | ${s} | ${f(
              m(s, c, (r) => r.rps),
              0,
            )} | ${s === 'off' ? '' : `${f(roundRatio(s, c))}×`} | ` +
              `${f(m(s, c, (r) => r.p50))} | ${f(m(s, c, (r) => r.p99))} | ${f(m(s, c, (r) => r.cpuMsPerReq))} | ` +
              `${s === 'off' ? '' : f(m(s, c, (r) => r.cpuMsPerReq) - m('off', c, (r) => r.cpuMsPerReq))} | ` +
              `${f(m(s, c, (r) => r.pgCpuMsPerReq))} |`,
          );
    }
    const md = `${L.join('\n')}\n`;
    process.stdout.write(`\n${md}`);
    const out = resolve(opt.out);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'telemetry.md'), md);
    writeFileSync(join(out, 'telemetry.json'), `${JSON.stringify({ summary, runs }, null, 2)}\n`);
    return failed ? 1 : 0;
  } finally {
    await stopAll();
    sink?.close();
    // The audit trail's schemas of this run are left to nobody.
    if (auditStore === 'postgres') {
      const pg = new Pool({ connectionString: pgUrl, max: 1 });
      for (const s of settings)
        await pg.query(`DROP SCHEMA IF EXISTS ${schemaOf(s)} CASCADE`).catch(() => {});
      await pg.end();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

let code: number;
try {
  code = await main();
} catch (err) {
  log(`\nBENCH FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  code = 1;
}
process.exit(code);
