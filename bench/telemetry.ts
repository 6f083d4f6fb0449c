/**
 * What observability costs in throughput: two gateways on the same fast-http backend, one with tracing
 * (every request sampled, exported over OTLP/HTTP to a sink in this process), metrics and the audit trail
 * (buffered, hash-chained, in the real Postgres under its own schema; MCPGW_BENCH_PG_URL) on, one with all
 * three off, measured in turn (A B A B ...) at each concurrency with
 * the load generator (tools/call echo on /servers/fasthttp/mcp). Reports req/s, p50 and p99 per setting and
 * the ratio on/off. Results go to stdout and to bench/results/telemetry.md and telemetry.json.
 *
 *   node dist/bench/telemetry.js [--duration 4] [--warmup 1] [--rounds 3] [--concurrency 64]
 *                                [--out bench/results] [--gateway-main dist/cli/main.js]
 *
 * Exit status: 0 when both settings ran without error; 1 otherwise (what could be measured is still written).
 */
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type LoadResult, runLoad } from './loadgen.js';
import { type Child, cpuMs, freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const node = process.execPath;

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    out: { type: 'string', default: join(root, 'bench', 'results') },
    'gateway-main': { type: 'string', default: join(root, 'dist', 'cli', 'main.js') },
  },
});
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);
const pgUrl = process.env.MCPGW_BENCH_PG_URL ?? 'postgres://root@127.0.0.1:5432/test';
const schema = `bench_tel_${process.pid}`;
const { Pool } = pg;
const log = (s: string): void => void process.stderr.write(`${s}\n`);

type Setting = 'on' | 'off';
interface Run extends LoadResult {
  setting: Setting;
  round: number;
  cpuMsPerReq: number | undefined;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

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

async function startGateway(
  setting: Setting,
  backendUrl: string,
  dir: string,
  otlpUrl: string,
): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const on = setting === 'on';
  const file = join(dir, `mcpgw-${setting}.yaml`);
  writeFileSync(
    file,
    [
      'role: single',
      `listen: { host: 127.0.0.1, port: ${port} }`,
      'log: { level: warn }',
      // On: the audit trail in the real Postgres (own schema, buffered sink), spans exported over OTLP.
      on
        ? `store: { kind: postgres, url: ${JSON.stringify(pgUrl)}, schema: ${schema} }`
        : 'store: { kind: memory }',
      `audit: { enabled: ${on}, sink: postgres }`,
      'telemetry:',
      `  tracing: { enabled: ${on}, exporter: otlp, endpoint: ${JSON.stringify(otlpUrl)}, sampleRatio: 1 }`,
      `  metrics: { enabled: ${on} }`,
      'servers:',
      '  - name: fasthttp',
      '    transport: streamable-http',
      `    url: ${JSON.stringify(backendUrl)}`,
      '',
    ].join('\n'),
  );
  const child = spawnChild(
    `mcpgw-${setting}`,
    node,
    [resolve(opt['gateway-main']), 'start', '--config', file],
    root,
  );
  await waitForHttp(child, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
  return { child, url: `http://127.0.0.1:${port}/servers/fasthttp/mcp` };
}

async function main(): Promise<number> {
  const backendJs = join(here, 'backends', 'fast-http.js');
  if (!existsSync(backendJs)) throw new Error(`${backendJs} is missing: build first (npm run build)`);
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-telemetry-'));
  let sink: Awaited<ReturnType<typeof otlpSink>> | undefined;
  try {
    const backend = spawnChild('fast-http', node, [backendJs, '--port', '0']);
    const backendUrl = await waitForListening(backend);
    sink = await otlpSink();
    const gws = {
      on: await startGateway('on', backendUrl, dir, sink.url),
      off: await startGateway('off', backendUrl, dir, sink.url),
    };
    const runs: Run[] = [];
    let failed = false;
    for (const concurrency of concurrencies) {
      for (let round = 1; round <= rounds; round++) {
        for (const setting of ['off', 'on'] as const) {
          const g = gws[setting];
          let cpu0: number | undefined;
          let cpu: number | undefined;
          const res = await runLoad({
            url: g.url,
            concurrency,
            durationMs,
            warmupMs,
            onMeasureStart: () => (cpu0 = cpuMs(g.child.pid)),
            onMeasureEnd: () => {
              const c = cpuMs(g.child.pid);
              cpu = c !== undefined && cpu0 !== undefined ? c - cpu0 : undefined;
            },
          });
          if (res.errors > 0) failed = true;
          runs.push({
            ...res,
            setting,
            round,
            cpuMsPerReq: cpu !== undefined && res.requests > 0 ? cpu / res.requests : undefined,
          });
          log(
            `  telemetry ${setting.padEnd(3)} c=${concurrency} round ${round}: ${res.rps.toFixed(0)} req/s, ` +
              `p50 ${res.p50.toFixed(3)} ms, p99 ${res.p99.toFixed(3)} ms${res.errors ? `, ERRORS ${res.errors}` : ''}`,
          );
        }
      }
    }
    const L = [
      '# mcpgw benchmark: tracing (OTLP to a local sink) + metrics + audit (Postgres, buffered) on vs off',
      '',
      `${new Date().toISOString()} · Node ${process.version} · ${os.cpus().length} CPU(s) · ${rounds} round(s), median · ` +
        `${opt.warmup} s warm-up + ${opt.duration} s measured · tools/call echo via /servers/fasthttp/mcp`,
      '',
      '| conc | off req/s | on req/s | on/off | off p50 ms | on p50 ms | off p99 ms | on p99 ms | off CPU ms/req | on CPU ms/req |',
      '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ];
    const summary = concurrencies.map((c) => {
      const pick = (s: Setting) =>
        runs.filter((r) => r.setting === s && r.concurrency === c && r.errors === 0);
      const m = (s: Setting, f: (r: Run) => number | undefined) => {
        const xs = pick(s)
          .map(f)
          .filter((x): x is number => x !== undefined);
        return xs.length ? median(xs) : NaN;
      };
      const row = {
        concurrency: c,
        offRps: m('off', (r) => r.rps),
        onRps: m('on', (r) => r.rps),
        offP50: m('off', (r) => r.p50),
        onP50: m('on', (r) => r.p50),
        offP99: m('off', (r) => r.p99),
        onP99: m('on', (r) => r.p99),
        offCpu: m('off', (r) => r.cpuMsPerReq),
        onCpu: m('on', (r) => r.cpuMsPerReq),
      };
      const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
      L.push(
        `| ${c} | ${row.offRps.toFixed(0)} | ${row.onRps.toFixed(0)} | ${(row.onRps / row.offRps).toFixed(3)}× | ` +
          `${f(row.offP50)} | ${f(row.onP50)} | ${f(row.offP99)} | ${f(row.onP99)} | ${f(row.offCpu)} | ${f(row.onCpu)} |`,
      );
      return row;
    });
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
    // The audit trail's schema of this run is left to nobody.
    const pg = new Pool({ connectionString: pgUrl, max: 1 });
    await pg.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await pg.end();
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
