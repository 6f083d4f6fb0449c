/**
 * The session store's cost, in one run (issue 3's targets):
 *
 * 1. Latency: two gateways on the same fast-http backend, one with `sessions.store: memory`, one with
 *    `sessions.store: redis`, measured in turn (A B A B ...) with the load generator (tools/call echo on
 *    /servers/fasthttp/mcp) at each concurrency; the median per store and the p50 difference (redis − memory).
 * 2. Memory: a fresh gateway per store; its RSS (/proc/<pid>/status VmRSS) once idle, then after N sessions
 *    were initialized (initialize + notifications/initialized each, over keep-alive HTTP, bounded
 *    concurrency, no GET streams) and left idle. The gateway exposes no way to force a GC, so by default it
 *    runs with `--inspect=127.0.0.1:0` and the bench collects garbage through the inspector protocol
 *    (HeapProfiler.collectGarbage) before each reading, and reads process.memoryUsage() there too; with
 *    `--gc none` the gateway runs without the inspector and RSS is read after a settle only (an upper
 *    bound: garbage not yet collected counts). Either way RSS is the median of a few samples.
 *
 * Redis is MCPGW_BENCH_REDIS_URL (default redis://127.0.0.1:6379); every gateway gets its own key prefix,
 * and its keys are deleted afterwards. Results go to stdout and to bench/results/sessions.md and sessions.json.
 *
 *   node dist/bench/sessions.js [--only latency,memory] [--duration 2] [--warmup 0.5] [--rounds 5]
 *                               [--concurrency 1,16] [--sessions 10000] [--open-concurrency 32]
 *                               [--memory-stores memory,redis] [--memory-path servers|aggregate]
 *                               [--memory-role single|edge]
 *                               [--settle 2] [--gc inspector|none] [--redis-url URL]
 *                               [--protocol-version 2025-11-25]
 *                               [--out bench/results] [--gateway-main dist/cli/main.js]
 *
 * Exit status: 0 when every selected scenario ran without error; 1 when any failed or was unavailable (e.g.
 * no Redis); the figures that could be measured are still printed and written.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Pool, WebSocket } from 'undici';
import { type LoadResult, runLoad } from './loadgen.js';
import {
  type Child,
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

type Store = 'memory' | 'redis';
const STORES: Store[] = ['memory', 'redis'];

function usage(msg: string): never {
  process.stderr.write(
    `${msg}\nusage: node dist/bench/sessions.js [--only latency,memory] [--duration S] [--warmup S] ` +
      `[--rounds N] [--concurrency 1,16] [--sessions N] [--open-concurrency N] ` +
      `[--memory-stores memory,redis] [--memory-path servers|aggregate] [--memory-role single|edge] ` +
      `[--settle S] [--gc inspector|none] ` +
      `[--redis-url URL] ` +
      `[--protocol-version V] [--out DIR] [--gateway-main FILE]\n`,
  );
  process.exit(2);
}

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string', default: 'latency,memory' },
    duration: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '0.5' },
    rounds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,16' },
    sessions: { type: 'string', default: '10000' },
    'open-concurrency': { type: 'string', default: '32' },
    'memory-stores': { type: 'string', default: 'memory,redis' },
    'memory-path': { type: 'string', default: 'servers' },
    'memory-role': { type: 'string', default: 'single' },
    settle: { type: 'string', default: '2' },
    gc: { type: 'string', default: 'inspector' },
    'redis-url': { type: 'string', default: process.env.MCPGW_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
    'protocol-version': { type: 'string', default: '2025-11-25' },
    out: { type: 'string', default: join(root, 'bench', 'results') },
    'gateway-main': { type: 'string', default: join(root, 'dist', 'cli', 'main.js') },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) usage('mcpgw session store benchmark');

const parts = new Set(opt.only.split(',').map((s) => s.trim()));
for (const p of parts) if (p !== 'latency' && p !== 'memory') usage(`unknown part "${p}"`);
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);
const sessionCount = Number(opt.sessions);
const openConcurrency = Number(opt['open-concurrency']);
const settleMs = Number(opt.settle) * 1000;
const memoryStores = opt['memory-stores'].split(',').map((s) => s.trim()) as Store[];
const memoryPath = opt['memory-path'];
/** `edge`: the sessions are opened on a role edge in front of a role core; the edge's memory is read. */
const memoryRole = opt['memory-role'] as 'single' | 'edge';
const forceGc = opt.gc === 'inspector';
if (
  !(durationMs > 0) ||
  !(warmupMs >= 0) ||
  !(rounds >= 1) ||
  concurrencies.some((c) => !(c >= 1)) ||
  !(sessionCount >= 1) ||
  !(openConcurrency >= 1) ||
  !(settleMs >= 0) ||
  memoryStores.some((s) => !STORES.includes(s)) ||
  (memoryPath !== 'servers' && memoryPath !== 'aggregate') ||
  (memoryRole !== 'single' && memoryRole !== 'edge') ||
  (opt.gc !== 'inspector' && opt.gc !== 'none')
) {
  usage(
    'bad --duration, --warmup, --rounds, --concurrency, --sessions, --open-concurrency, --settle, ' +
      '--memory-stores, --memory-path, --memory-role or --gc',
  );
}
const redisUrl = opt['redis-url'];
const protocolVersion = opt['protocol-version'];
const mcpPathOf = (kind: string): string => (kind === 'aggregate' ? '/mcp' : '/servers/fasthttp/mcp');

/** Targets of issue 3. */
const TARGET_P50_DELTA_MS = 0.2;
const TARGET_CONCURRENCY = 16;
const TARGET_MIB_PER_10K = 100;

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const errMsg = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Resident set size of one process in KiB (VmRSS), or undefined if unavailable. */
function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Waits `settleMs`, then returns the median of a few RSS samples 200 ms apart (KiB). */
async function settledRss(pid: number): Promise<number> {
  await sleep(settleMs);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i > 0) await sleep(200);
    const v = rssKiB(pid);
    if (v !== undefined) xs.push(v);
  }
  if (xs.length === 0) throw new Error(`cannot read /proc/${pid}/status (VmRSS)`);
  return median(xs);
}

/** process.memoryUsage() of the gateway, bytes. */
interface MemoryUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** A Chrome DevTools Protocol session with a process started with `--inspect`: forced GC and memory figures. */
class Inspector {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(String(ev.data)) as {
        id?: number;
        result?: unknown;
        error?: { message?: string };
      };
      const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
      if (!p) return;
      this.pending.delete(msg.id!);
      if (msg.error) p.reject(new Error(`inspector: ${msg.error.message ?? 'error'}`));
      else p.resolve(msg.result);
    });
    ws.addEventListener('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('inspector connection closed'));
      this.pending.clear();
    });
  }

  /** Connects to the inspector a child announced on stderr ("Debugger listening on ws://..."). */
  static async attach(child: Child): Promise<Inspector> {
    const m = /Debugger listening on (ws:\/\/\S+)/.exec(child.tail());
    if (!m) throw new Error(`${child.name} did not announce an inspector URL`);
    const ws = new WebSocket(m[1]!);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot connect to the inspector at ${m[1]}`)), {
        once: true,
      });
    });
    return new Inspector(ws);
  }

  send(method: string, params: object = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Two full collections (the second one frees what finalizers of the first let go). */
  async collectGarbage(): Promise<void> {
    await this.send('HeapProfiler.collectGarbage');
    await this.send('HeapProfiler.collectGarbage');
  }

  async memoryUsage(): Promise<MemoryUsage> {
    const r = (await this.send('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    })) as { result?: { value?: unknown } };
    return JSON.parse(String(r.result?.value)) as MemoryUsage;
  }

  close(): void {
    this.ws.close();
  }
}

/** A reading of the gateway's memory: RSS (median of samples, KiB) and, with the inspector, the JS heap. */
interface MemoryReading {
  rssKiB: number;
  heapUsedKiB?: number;
  externalKiB?: number;
}

async function readMemory(pid: number, inspector: Inspector | undefined): Promise<MemoryReading> {
  if (!inspector) return { rssKiB: await settledRss(pid) };
  await inspector.collectGarbage();
  const rss = await settledRss(pid);
  // GC again right before reading the heap, so that the figure does not depend on the settle.
  await inspector.collectGarbage();
  const mu = await inspector.memoryUsage();
  return { rssKiB: rss, heapUsedKiB: mu.heapUsed / 1024, externalKiB: mu.external / 1024 };
}

// ---------------------------------------------------------------------------------------------------------
// Redis (for the check up front, the key count, the per-session size in Redis and the clean-up)

let redis: Redis | undefined;
let redisPid: number | undefined;
let redisProblem: string | undefined;
const prefixes: string[] = [];

async function connectRedis(): Promise<void> {
  const r = new Redis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: () => null,
  });
  let lastError: Error | undefined;
  r.on('error', (err: Error) => void (lastError = err));
  try {
    await r.connect();
    await r.ping();
    redis = r;
    const info = await r.info('server');
    const m = /^process_id:(\d+)/m.exec(info);
    // Its CPU time is readable when the Redis server runs on this machine (and may include other clients).
    if (m && cpuMs(Number(m[1])) !== undefined) redisPid = Number(m[1]);
  } catch (err) {
    redisProblem = `Redis at ${redisUrl} is not reachable: ${errMsg(lastError ?? err)} (set MCPGW_BENCH_REDIS_URL)`;
    r.disconnect();
  }
}

async function keysOf(prefix: string): Promise<string[]> {
  if (!redis) return [];
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

async function deleteKeys(prefix: string): Promise<number> {
  if (!redis) return 0;
  const keys = await keysOf(prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500));
  return keys.length;
}

/** Key count under `prefix` and the mean MEMORY USAGE of a sample of them (bytes). */
async function redisFootprint(prefix: string): Promise<{ keys: number; bytesPerKey: number | undefined }> {
  if (!redis) return { keys: 0, bytesPerKey: undefined };
  const keys = await keysOf(prefix);
  const step = Math.max(1, Math.floor(keys.length / 200));
  const sizes: number[] = [];
  for (let i = 0; i < keys.length; i += step) {
    const n = await redis.call('MEMORY', 'USAGE', keys[i]!, 'SAMPLES', '0');
    if (typeof n === 'number') sizes.push(n);
  }
  return {
    keys: keys.length,
    bytesPerKey: sizes.length > 0 ? sizes.reduce((a, b) => a + b, 0) / sizes.length : undefined,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Processes

let tmpDir: string | undefined;
let fastHttpUrl = '';
let fastHttp: Child | undefined;

interface Gateway {
  store: Store;
  child: Child;
  base: string;
  prefix: string | undefined;
  /** The core behind an edge (`--memory-role edge`). */
  core?: Child;
}

async function startBackend(): Promise<void> {
  const js = join(here, 'backends', 'fast-http.js');
  if (!existsSync(js)) throw new Error(`${js} is missing: build first (npm run build)`);
  fastHttp = spawnChild('fast-http', node, [js, '--port', '0']);
  fastHttpUrl = await waitForListening(fastHttp);
  log(`fast-http backend: ${fastHttpUrl} (pid ${fastHttp.pid})`);
}

async function startGateway(
  store: Store,
  label: string,
  inspect = false,
  role: 'single' | 'edge' = 'single',
): Promise<Gateway> {
  const main = resolve(opt['gateway-main']);
  if (!existsSync(main)) throw new Error(`${main} does not exist (the gateway is not built)`);
  tmpDir ??= mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-sessions-'));
  const port = await freePort();
  const servers = [
    'servers:',
    '  - name: fasthttp',
    '    transport: streamable-http',
    `    url: ${JSON.stringify(fastHttpUrl)}`,
  ];
  let core: Child | undefined;
  let roleLines = ['role: single', ...servers];
  if (role === 'edge') {
    // A core with the server behind the edge; the edge signs internal tokens the core trusts.
    const pair = generateKeyPairSync('ed25519');
    const priv = join(tmpDir, `${label}-edge.key.pem`);
    const pub = join(tmpDir, `${label}-edge.pub.pem`);
    writeFileSync(priv, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    const corePort = await freePort();
    const coreFile = join(tmpDir, `mcpgw-${label}-core.yaml`);
    writeFileSync(
      coreFile,
      [
        'role: core',
        'region: local',
        `listen: { host: 127.0.0.1, port: ${corePort} }`,
        'log: { level: warn }',
        `internal: { id: core-1, trustedKeys: [${JSON.stringify(pub)}] }`,
        ...servers,
        '',
      ].join('\n'),
    );
    core = spawnChild(`mcpgw-${label}-core`, node, [main, 'start', '--config', coreFile], root);
    await waitForHttp(core, `http://127.0.0.1:${corePort}/readyz`, (st) => st === 200, 30_000);
    roleLines = [
      'role: edge',
      `cores: [{ region: local, id: core-1, url: "http://127.0.0.1:${corePort}" }]`,
      `internal: { signingKey: ${JSON.stringify(priv)} }`,
    ];
  }
  const prefix =
    store === 'redis' ? `mcpgw-bench-${process.pid}-${randomBytes(4).toString('hex')}-${label}` : undefined;
  if (prefix) prefixes.push(prefix);
  const config = [
    ...roleLines,
    'region: local',
    `listen: { host: 127.0.0.1, port: ${port} }`,
    'auth: { mode: none }',
    'log: { level: warn }',
    `sessions: { store: ${store} }`,
    ...(prefix ? [`redis: { url: ${JSON.stringify(redisUrl)}, keyPrefix: ${prefix} }`] : []),
    '',
  ].join('\n');
  const file = join(tmpDir, `mcpgw-${label}.yaml`);
  writeFileSync(file, config);
  const child = spawnChild(
    `mcpgw-${label}`,
    node,
    [...(inspect ? ['--inspect=127.0.0.1:0'] : []), main, 'start', '--config', file],
    root,
  );
  try {
    await waitForHttp(child, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
  } catch (err) {
    const out = child.tail().trim();
    await stopChild(child);
    if (core) await stopChild(core);
    throw new Error(`${errMsg(err)}${out ? `\n--- mcpgw output ---\n${out}` : ''}`, { cause: err });
  }
  log(
    `mcpgw ${role} (${label}, ${store} sessions): http://127.0.0.1:${port} (pid ${child.pid}), config ${file}`,
  );
  return { store, child, base: `http://127.0.0.1:${port}`, prefix, ...(core && { core }) };
}

async function stopGateway(gw: Gateway): Promise<void> {
  // Ending thousands of sessions takes a while; whatever is left when the grace runs out is killed.
  await stopChild(gw.child, 5000);
  if (gw.core) await stopChild(gw.core, 5000);
  if (gw.prefix) {
    try {
      await deleteKeys(gw.prefix);
    } catch (err) {
      log(`could not delete the Redis keys ${gw.prefix}:*: ${errMsg(err)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Latency: memory vs Redis sessions

interface LatencyRun extends LoadResult {
  store: Store;
  round: number;
  gatewayCpuMsPerReq: number | undefined;
  /** CPU time of the Redis server over the window, per request (redis store; other clients included). */
  redisCpuMsPerReq: number | undefined;
}

interface LatencySummary {
  store: Store;
  concurrency: number;
  runs: number;
  p50: number;
  p99: number;
  rps: number;
  gatewayCpuMsPerReq: number | undefined;
  redisCpuMsPerReq: number | undefined;
}

interface LatencyDelta {
  concurrency: number;
  /** median(redis p50) − median(memory p50), ms */
  p50DeltaMs: number;
  /** The same difference within each round (paired runs), ms */
  perRoundP50DeltaMs: number[];
  /** Median of the per-round differences, ms */
  medianPairedP50DeltaMs: number | undefined;
  p99DeltaMs: number;
  rpsRatio: number;
  gatewayCpuDeltaMsPerReq: number | undefined;
}

const latencyRuns: LatencyRun[] = [];
const problems: { scenario: string; why: string }[] = [];

async function measureLatency(gw: Gateway, concurrency: number, round: number): Promise<string | undefined> {
  const pid = gw.child.pid;
  const rpid = gw.store === 'redis' ? redisPid : undefined;
  let cpuStart: number | undefined;
  let cpu: number | undefined;
  let redisStart: number | undefined;
  let redisCpu: number | undefined;
  const res = await runLoad({
    url: `${gw.base}${mcpPathOf('servers')}`,
    concurrency,
    durationMs,
    warmupMs,
    protocolVersion,
    onMeasureStart: () => {
      cpuStart = cpuMs(pid);
      redisStart = rpid !== undefined ? cpuMs(rpid) : undefined;
    },
    onMeasureEnd: () => {
      const c = cpuMs(pid);
      cpu = c !== undefined && cpuStart !== undefined ? c - cpuStart : undefined;
      const rc = rpid !== undefined ? cpuMs(rpid) : undefined;
      redisCpu = rc !== undefined && redisStart !== undefined ? rc - redisStart : undefined;
    },
  });
  if (isStopping()) return undefined;
  latencyRuns.push({
    ...res,
    store: gw.store,
    round,
    gatewayCpuMsPerReq: cpu !== undefined && res.requests > 0 ? cpu / res.requests : undefined,
    redisCpuMsPerReq: redisCpu !== undefined && res.requests > 0 ? redisCpu / res.requests : undefined,
  });
  log(
    `  ${gw.store.padEnd(6)} c=${String(concurrency).padStart(2)} round ${round}: ` +
      `p50 ${res.p50.toFixed(3)} ms  p99 ${res.p99.toFixed(3)} ms  ${res.rps.toFixed(0)} req/s` +
      (res.errors > 0 ? `  ERRORS ${res.errors}` : ''),
  );
  if (res.errors > 0 || res.requests === 0 || gw.child.hasExited()) {
    return (
      `${res.errors} error(s) at concurrency ${concurrency}, round ${round}` +
      (gw.child.hasExited() ? ` (${gw.child.name} exited)\n${gw.child.tail().trim()}` : '') +
      (res.errorSamples.length > 0 ? `:\n    ${res.errorSamples.join('\n    ')}` : '') +
      (res.requests === 0 && res.errors === 0 ? ': no request completed in the measured window' : '')
    );
  }
  return undefined;
}

async function latencyScenario(): Promise<void> {
  const gws: Gateway[] = [];
  try {
    for (const store of STORES) {
      if (store === 'redis' && redisProblem) {
        problems.push({ scenario: 'latency (redis)', why: redisProblem });
        continue;
      }
      try {
        gws.push(await startGateway(store, `latency-${store}`));
      } catch (err) {
        problems.push({
          scenario: `latency (${store})`,
          why: `the gateway could not be started: ${errMsg(err)}`,
        });
      }
    }
    if (gws.length === 0) return;
    const failed = new Set<Store>();
    for (const c of concurrencies) {
      for (let r = 1; r <= rounds; r++) {
        for (const gw of gws) {
          if (failed.has(gw.store) || isStopping()) continue;
          const why = await measureLatency(gw, c, r);
          if (why) {
            failed.add(gw.store);
            problems.push({ scenario: `latency (${gw.store})`, why });
            log(`\n!!!!! latency with ${gw.store} sessions FAILED: ${why}\n`);
          }
          await sleep(200);
        }
      }
    }
  } finally {
    for (const gw of gws) await stopGateway(gw);
  }
}

function summarizeLatency(): { sums: LatencySummary[]; deltas: LatencyDelta[] } {
  const sums: LatencySummary[] = [];
  const ok = (r: LatencyRun): boolean => r.errors === 0 && r.requests > 0;
  for (const store of STORES) {
    for (const c of concurrencies) {
      const rs = latencyRuns.filter((r) => r.store === store && r.concurrency === c && ok(r));
      if (rs.length === 0) continue;
      const med = (xs: (number | undefined)[]): number | undefined => {
        const ok = xs.filter((x): x is number => x !== undefined);
        return ok.length > 0 ? median(ok) : undefined;
      };
      sums.push({
        store,
        concurrency: c,
        runs: rs.length,
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        rps: median(rs.map((r) => r.rps)),
        gatewayCpuMsPerReq: med(rs.map((r) => r.gatewayCpuMsPerReq)),
        redisCpuMsPerReq: med(rs.map((r) => r.redisCpuMsPerReq)),
      });
    }
  }
  const deltas: LatencyDelta[] = [];
  for (const c of concurrencies) {
    const m = sums.find((s) => s.store === 'memory' && s.concurrency === c);
    const r = sums.find((s) => s.store === 'redis' && s.concurrency === c);
    if (!m || !r) continue;
    const perRound: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const a = latencyRuns.find((x) => x.store === 'memory' && x.concurrency === c && x.round === round);
      const b = latencyRuns.find((x) => x.store === 'redis' && x.concurrency === c && x.round === round);
      if (a && b && ok(a) && ok(b)) perRound.push(b.p50 - a.p50);
    }
    deltas.push({
      concurrency: c,
      p50DeltaMs: r.p50 - m.p50,
      perRoundP50DeltaMs: perRound,
      medianPairedP50DeltaMs: perRound.length > 0 ? median(perRound) : undefined,
      p99DeltaMs: r.p99 - m.p99,
      rpsRatio: r.rps / m.rps,
      gatewayCpuDeltaMsPerReq:
        r.gatewayCpuMsPerReq !== undefined && m.gatewayCpuMsPerReq !== undefined
          ? r.gatewayCpuMsPerReq - m.gatewayCpuMsPerReq
          : undefined,
    });
  }
  return { sums, deltas };
}

// ---------------------------------------------------------------------------------------------------------
// 2. Memory of idle sessions

interface OpenResult {
  ids: string[];
  errors: number;
  errorSamples: string[];
  ms: number;
}

const ACCEPT = 'application/json, text/event-stream';

/** Opens `n` sessions (initialize + notifications/initialized), `concurrency` at a time, on keep-alive HTTP. */
async function openSessions(url: string, n: number, concurrency: number): Promise<OpenResult> {
  const target = new URL(url);
  const path = target.pathname;
  const pool = new Pool(target.origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 30_000 });
  const ids: string[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let next = 0;
  const t0 = process.hrtime.bigint();
  const one = async (i: number): Promise<void> => {
    const init = await pool.request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion,
          capabilities: {},
          clientInfo: { name: 'mcpgw-bench-sessions', version: '1.0.0' },
        },
      }),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const text = await init.body.text();
    const sid = init.headers['mcp-session-id'];
    if (init.statusCode !== 200 || typeof sid !== 'string')
      throw new Error(
        `initialize ${i}: HTTP ${init.statusCode}, session id ${String(sid)}: ${text.slice(0, 200)}`,
      );
    // The gateway answers initialize with JSON; an SSE answer carries the same message in a data line.
    const sse = String(init.headers['content-type'] ?? '').startsWith('text/event-stream');
    const json = sse ? ([...text.matchAll(/^data: ?(.+)$/gm)].pop()?.[1] ?? '') : text;
    let version: unknown;
    try {
      version = (JSON.parse(json) as { result?: { protocolVersion?: unknown } }).result?.protocolVersion;
    } catch {
      version = undefined;
    }
    if (typeof version !== 'string')
      throw new Error(`initialize ${i}: no protocolVersion in ${text.slice(0, 200)}`);
    const ack = await pool.request({
      path,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: ACCEPT,
        'mcp-session-id': sid,
        'mcp-protocol-version': version,
      },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const ackText = await ack.body.text();
    if (ack.statusCode !== 202)
      throw new Error(`notifications/initialized ${i}: HTTP ${ack.statusCode} ${ackText.slice(0, 200)}`);
    ids.push(sid);
  };
  const worker = async (): Promise<void> => {
    while (next < n && errors === 0 && !isStopping()) {
      const i = next++;
      try {
        await one(i);
      } catch (err) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push(errMsg(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await pool.close();
  return { ids, errors, errorSamples, ms };
}

/** Sends `method` (DELETE, or POST ping) for each session id; returns the ids that did not answer as expected. */
async function forEachSession(
  url: string,
  ids: string[],
  method: 'DELETE' | 'ping',
  concurrency: number,
): Promise<string[]> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: concurrency, pipelining: 1 });
  const bad: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const sid = ids[next++]!;
      try {
        const headers: Record<string, string> = {
          accept: ACCEPT,
          'mcp-session-id': sid,
          'mcp-protocol-version': protocolVersion,
        };
        const res =
          method === 'DELETE'
            ? await pool.request({ path: target.pathname, method: 'DELETE', headers })
            : await pool.request({
                path: target.pathname,
                method: 'POST',
                headers: { ...headers, 'content-type': 'application/json' },
                body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'ping' }),
              });
        const text = await res.body.text();
        const good = res.statusCode === 200 && (method === 'DELETE' || text.includes('"result"'));
        if (!good) bad.push(`${sid}: HTTP ${res.statusCode} ${text.slice(0, 120)}`);
      } catch (err) {
        bad.push(`${sid}: ${errMsg(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker));
  await pool.close();
  return bad;
}

interface MemoryResult {
  store: Store;
  /** The role whose memory was read (an edge has a core behind it). */
  role: string;
  path: string;
  sessions: number;
  /** RSS right after /readyz, KiB */
  coldRssKiB: number | undefined;
  /** RSS after a warm-up (sessions opened and deleted) and a settle, KiB */
  baselineRssKiB: number | undefined;
  /** RSS with `sessions` idle sessions, after a settle, KiB */
  afterRssKiB: number | undefined;
  deltaMiB: number | undefined;
  kibPerSession: number | undefined;
  /** Δ scaled to 10,000 sessions, MiB */
  mibPer10k: number | undefined;
  /** Whether garbage was collected (inspector) before each reading. */
  gcForced: boolean;
  /** JS heap in use (after a forced GC) at the baseline and with the sessions, KiB; inspector only. */
  baselineHeapKiB?: number;
  afterHeapKiB?: number;
  heapKiBPerSession?: number;
  /** process.memoryUsage().external per session, KiB; inspector only. */
  externalKiBPerSession?: number;
  openSeconds: number | undefined;
  openPerSecond: number | undefined;
  /** Sessions probed with ping after the measurement, and how many of them answered. */
  probed: number;
  probeFailures: number;
  redisKeys?: number;
  redisKeysPerSession?: number;
  redisBytesPerSession?: number;
  error?: string;
}

const memoryResults: MemoryResult[] = [];

async function memoryScenario(store: Store): Promise<void> {
  const path = mcpPathOf(memoryPath);
  const r: MemoryResult = {
    store,
    role: memoryRole,
    path,
    sessions: sessionCount,
    coldRssKiB: undefined,
    baselineRssKiB: undefined,
    afterRssKiB: undefined,
    deltaMiB: undefined,
    kibPerSession: undefined,
    mibPer10k: undefined,
    gcForced: forceGc,
    openSeconds: undefined,
    openPerSecond: undefined,
    probed: 0,
    probeFailures: 0,
  };
  memoryResults.push(r);
  if (store === 'redis' && redisProblem) {
    r.error = redisProblem;
    problems.push({ scenario: 'memory (redis)', why: redisProblem });
    return;
  }
  let gw: Gateway | undefined;
  let inspector: Inspector | undefined;
  try {
    gw = await startGateway(store, `memory-${store}`, forceGc, memoryRole);
    const pid = gw.child.pid;
    if (forceGc) inspector = await Inspector.attach(gw.child);
    const url = `${gw.base}${path}`;
    r.coldRssKiB = rssKiB(pid);
    // Warm-up: the code paths get compiled and the pools grow before the baseline, so that the delta is
    // what the sessions hold, not one-time costs.
    const warm = await openSessions(url, Math.min(500, sessionCount), openConcurrency);
    if (warm.errors > 0)
      throw new Error(`warm-up: ${warm.errors} error(s):\n    ${warm.errorSamples.join('\n    ')}`);
    const undeleted = await forEachSession(url, warm.ids, 'DELETE', openConcurrency);
    if (undeleted.length > 0) throw new Error(`warm-up DELETE failed: ${undeleted.slice(0, 3).join('; ')}`);
    const before = await readMemory(pid, inspector);
    r.baselineRssKiB = before.rssKiB;
    r.baselineHeapKiB = before.heapUsedKiB;
    log(
      `  ${store}: cold RSS ${mib(r.coldRssKiB)} MiB, baseline ${mib(r.baselineRssKiB)} MiB; ` +
        `opening ${sessionCount} sessions on ${path}, ${openConcurrency} at a time`,
    );
    const opened = await openSessions(url, sessionCount, openConcurrency);
    r.openSeconds = opened.ms / 1000;
    r.openPerSecond = opened.ids.length / r.openSeconds;
    if (opened.errors > 0 || gw.child.hasExited())
      throw new Error(
        `${opened.errors} error(s) after ${opened.ids.length} session(s)` +
          (gw.child.hasExited() ? ` (the gateway exited)\n${gw.child.tail().trim()}` : '') +
          `:\n    ${opened.errorSamples.join('\n    ')}`,
      );
    const after = await readMemory(pid, inspector);
    r.afterRssKiB = after.rssKiB;
    const deltaKiB = r.afterRssKiB - r.baselineRssKiB;
    r.deltaMiB = deltaKiB / 1024;
    r.kibPerSession = deltaKiB / sessionCount;
    r.mibPer10k = (r.kibPerSession * 10_000) / 1024;
    if (after.heapUsedKiB !== undefined && before.heapUsedKiB !== undefined) {
      r.afterHeapKiB = after.heapUsedKiB;
      r.heapKiBPerSession = (after.heapUsedKiB - before.heapUsedKiB) / sessionCount;
    }
    if (after.externalKiB !== undefined && before.externalKiB !== undefined)
      r.externalKiBPerSession = (after.externalKiB - before.externalKiB) / sessionCount;
    log(
      `  ${store}: ${sessionCount} sessions in ${r.openSeconds.toFixed(1)} s (${r.openPerSecond.toFixed(0)}/s); ` +
        `RSS ${mib(r.afterRssKiB)} MiB, Δ ${r.deltaMiB.toFixed(1)} MiB, ${r.kibPerSession.toFixed(2)} KiB/session` +
        (r.heapKiBPerSession !== undefined ? ` (JS heap ${r.heapKiBPerSession.toFixed(2)} KiB/session)` : ''),
    );
    // The sessions must still be there (not expired, not dropped): probe a spread of them.
    const step = Math.max(1, Math.floor(opened.ids.length / 100));
    const sample = opened.ids.filter((_, i) => i % step === 0);
    const bad = await forEachSession(url, sample, 'ping', 8);
    r.probed = sample.length;
    r.probeFailures = bad.length;
    if (bad.length > 0)
      throw new Error(
        `${bad.length} of ${sample.length} probed sessions did not answer ping: ${bad.slice(0, 3).join('; ')}`,
      );
    if (gw.prefix) {
      const fp = await redisFootprint(gw.prefix);
      r.redisKeys = fp.keys;
      r.redisKeysPerSession = fp.keys / sessionCount;
      if (fp.bytesPerKey !== undefined) r.redisBytesPerSession = (fp.bytesPerKey * fp.keys) / sessionCount;
    }
  } catch (err) {
    r.error = errMsg(err);
    problems.push({ scenario: `memory (${store})`, why: r.error });
    log(`\n!!!!! memory with ${store} sessions FAILED: ${r.error}\n`);
  } finally {
    inspector?.close();
    if (gw) await stopGateway(gw);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Report

const ms3 = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : x < 10 ? x.toFixed(3) : x.toFixed(1);
const signedMs = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : `${x >= 0 ? '+' : '−'}${ms3(Math.abs(x))}`;
const int = (x: number | undefined): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : Math.round(x).toString();
const mib = (kib: number | undefined): string =>
  kib === undefined || !Number.isFinite(kib) ? 'n/a' : (kib / 1024).toFixed(1);
const fix = (x: number | undefined, d: number): string =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d);

function report(sums: LatencySummary[], deltas: LatencyDelta[], startedAt: Date, elapsedS: number): string {
  const cpus = os.cpus();
  const L: string[] = [];
  L.push('# mcpgw session store benchmark');
  L.push('');
  L.push(
    `${startedAt.toISOString()} · Node ${process.version} · ${os.platform()} ${os.arch()} · ` +
      `${cpus.length} CPU(s) (${cpus[0]?.model.trim() ?? '?'}) · loopback · Redis ${redisUrl} · ` +
      `took ${elapsedS.toFixed(0)} s`,
  );
  L.push('');
  L.push('## Targets (issue 3)');
  L.push('');
  L.push('| target | measured | verdict |');
  L.push('|---|--:|---|');
  const d16 = deltas.find((d) => d.concurrency === TARGET_CONCURRENCY);
  L.push(
    `| (a) Redis sessions add ≤ ${TARGET_P50_DELTA_MS} ms p50 over memory at c=${TARGET_CONCURRENCY} | ` +
      `${d16 ? `${signedMs(d16.p50DeltaMs)} ms` : 'not measured'} | ` +
      `${d16 ? (d16.p50DeltaMs <= TARGET_P50_DELTA_MS ? 'met' : 'NOT MET') : 'n/a'} |`,
  );
  for (const m of memoryResults) {
    L.push(
      `| (b) 10k idle sessions ≤ ${TARGET_MIB_PER_10K} MiB of gateway RSS (${m.store} store) | ` +
        `${m.mibPer10k !== undefined ? `${fix(m.mibPer10k, 1)} MiB` : 'not measured'} | ` +
        `${m.mibPer10k !== undefined ? (m.mibPer10k <= TARGET_MIB_PER_10K ? 'met' : 'NOT MET') : 'n/a'} |`,
    );
  }
  if (parts.has('latency')) {
    L.push('');
    L.push(`## Latency by session store (tools/call echo, ${mcpPathOf('servers')})`);
    L.push('');
    L.push(
      `${rounds} round(s) per point, median reported · ${opt.warmup} s warm-up + ${opt.duration} s measured per run · ` +
        `the two gateways alternate within each round · MCP ${protocolVersion}`,
    );
    L.push('');
    L.push('| store | conc | p50 ms | p99 ms | req/s | gateway CPU ms/req | Redis CPU ms/req | runs |');
    L.push('|---|--:|--:|--:|--:|--:|--:|--:|');
    for (const store of STORES) {
      for (const c of concurrencies) {
        const s = sums.find((x) => x.store === store && x.concurrency === c);
        if (!s) {
          L.push(`| ${store} | ${c} | not measured | | | | | |`);
          continue;
        }
        L.push(
          `| ${store} | ${c} | ${ms3(s.p50)} | ${ms3(s.p99)} | ${int(s.rps)} | ${ms3(s.gatewayCpuMsPerReq)} | ` +
            `${store === 'redis' ? ms3(s.redisCpuMsPerReq) : '—'} | ${s.runs} |`,
        );
      }
    }
    L.push('');
    L.push(
      '| conc | p50 redis − memory (ms) | per round (ms) | median of rounds (ms) | p99 redis − memory (ms) | ' +
        'req/s redis / memory | gateway CPU redis − memory (ms/req) |',
    );
    L.push('|--:|--:|--:|--:|--:|--:|--:|');
    for (const d of deltas) {
      L.push(
        `| ${d.concurrency} | ${signedMs(d.p50DeltaMs)} | ${d.perRoundP50DeltaMs.map(signedMs).join(', ')} | ` +
          `${signedMs(d.medianPairedP50DeltaMs)} | ${signedMs(d.p99DeltaMs)} | ${fix(d.rpsRatio, 2)}× | ` +
          `${signedMs(d.gatewayCpuDeltaMsPerReq)} |`,
      );
    }
    L.push('');
    L.push(
      '"p50 redis − memory" = median p50 with Redis sessions minus median p50 with memory sessions; "per round" ' +
        'pairs the two runs of each round. Gateway CPU = user+system CPU time of the gateway over the measured ' +
        'window, per request; Redis CPU likewise for the Redis server when it runs on this machine (it counts ' +
        'any other client of that Redis too). Load generator, backend, gateways and Redis share the machine.',
    );
  }
  if (parts.has('memory')) {
    L.push('');
    L.push(`## Memory of idle sessions (${mcpPathOf(memoryPath)}, role ${memoryRole})`);
    L.push('');
    L.push(
      `A fresh gateway per store. Baseline = gateway RSS after a warm-up (${Math.min(500, sessionCount)} ` +
        `sessions opened and deleted); after = RSS with the sessions open and idle. Each reading: ` +
        (forceGc
          ? 'two full GCs through the inspector (the gateway runs with `--inspect=127.0.0.1:0`), '
          : 'no forced GC (garbage not yet collected counts: an upper bound), ') +
        `a ${opt.settle} s settle, then the median of 5 VmRSS samples 200 ms apart` +
        (forceGc ? '; JS heap = process.memoryUsage().heapUsed after another forced GC. ' : '. ') +
        `Sessions opened ${openConcurrency} at a time over keep-alive HTTP, initialize + ` +
        'notifications/initialized each, no GET stream; a spread of them answers ping afterwards. ' +
        '"MiB per 10k" = Δ RSS scaled to 10,000 sessions. 1 MiB = 1024 KiB.',
    );
    L.push('');
    L.push(
      '| store | sessions | cold RSS MiB | baseline RSS MiB | after RSS MiB | Δ RSS MiB | KiB/session | ' +
        'MiB per 10k | JS heap KiB/session | opened in s (per s) | in Redis: keys/session, bytes/session |',
    );
    L.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const m of memoryResults) {
      if (m.error && m.afterRssKiB === undefined) {
        L.push(`| ${m.store} | ${m.sessions} | FAILED | | | | | | | | |`);
        continue;
      }
      L.push(
        `| ${m.store} | ${m.sessions} | ${mib(m.coldRssKiB)} | ${mib(m.baselineRssKiB)} | ${mib(m.afterRssKiB)} | ` +
          `${fix(m.deltaMiB, 1)} | ${fix(m.kibPerSession, 2)} | ${fix(m.mibPer10k, 1)} | ` +
          `${m.heapKiBPerSession !== undefined ? fix(m.heapKiBPerSession, 2) : '—'} | ` +
          `${fix(m.openSeconds, 1)} (${int(m.openPerSecond)}) | ` +
          `${m.redisKeys !== undefined ? `${fix(m.redisKeysPerSession, 1)}, ${int(m.redisBytesPerSession)}` : '—'} |`,
      );
    }
  }
  if (problems.length > 0) {
    L.push('');
    L.push('## Not measured');
    L.push('');
    for (const p of problems) {
      L.push(`- **${p.scenario}**: FAILED or unavailable`);
      L.push('');
      L.push('  ```');
      for (const line of p.why.split('\n').slice(0, 40)) L.push(`  ${line}`);
      L.push('  ```');
    }
  }
  L.push('');
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const startedAt = new Date();
  const t0 = Date.now();
  const est =
    (parts.has('latency') ? 2 * concurrencies.length * rounds * ((durationMs + warmupMs) / 1000 + 0.5) : 0) +
    (parts.has('memory') ? memoryStores.length * (8 + (2 * settleMs) / 1000 + sessionCount / 2000) : 0);
  log(
    `mcpgw sessions bench: ${[...parts].join(' + ')}; c=${concurrencies.join(',')} × ${rounds} round(s); ` +
      `${sessionCount} idle sessions per store (${memoryStores.join(', ')}); about ${Math.ceil(est / 60)} min`,
  );
  await connectRedis();
  if (redisProblem) log(`\n***** ${redisProblem} *****\n`);
  await startBackend();
  if (parts.has('latency')) await latencyScenario();
  if (parts.has('memory')) for (const store of memoryStores) if (!isStopping()) await memoryScenario(store);

  const elapsed = (Date.now() - t0) / 1000;
  const { sums, deltas } = summarizeLatency();
  const md = report(sums, deltas, startedAt, elapsed);
  process.stdout.write(`\n${md}`);

  const outDir = resolve(opt.out);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'sessions.md'), md);
  writeFileSync(
    join(outDir, 'sessions.json'),
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        elapsedSeconds: elapsed,
        environment: {
          node: process.version,
          platform: `${os.platform()} ${os.arch()}`,
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model.trim(),
          redisUrl,
        },
        parameters: {
          parts: [...parts],
          durationMs,
          warmupMs,
          rounds,
          concurrencies,
          protocolVersion,
          sessions: sessionCount,
          openConcurrency,
          settleMs,
          memoryStores,
          memoryPath: mcpPathOf(memoryPath),
          memoryRole,
        },
        targets: {
          p50DeltaMs: { limit: TARGET_P50_DELTA_MS, concurrency: TARGET_CONCURRENCY },
          mibPer10kSessions: { limit: TARGET_MIB_PER_10K },
        },
        latency: { summary: sums, deltas, runs: latencyRuns },
        memory: memoryResults,
        problems,
      },
      null,
      2,
    )}\n`,
  );
  log(`\nwritten: ${join(outDir, 'sessions.md')} and sessions.json`);
  if (problems.length > 0) {
    log(`\nSESSIONS BENCH INCOMPLETE: ${problems.map((p) => p.scenario).join(', ')}`);
    return 1;
  }
  return 0;
}

let code: number;
try {
  code = await main();
} catch (err) {
  log(`\nSESSIONS BENCH FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  code = 1;
} finally {
  await stopAll();
  for (const p of prefixes) {
    try {
      await deleteKeys(p);
    } catch {
      // reported where it was first attempted
    }
  }
  redis?.disconnect();
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
}
process.exit(code);
