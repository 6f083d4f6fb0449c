/**
 * `npm run bench`: every benchmark section in turn, each in its own process (the section scripts also run
 * alone), then one report: `bench/results/results.md` (a summary table against the targets, then each
 * section's figures), `results.json`, and PNG charts in `bench/results/charts/`.
 *
 *   overhead    single node: direct vs bare hop vs mcpgw (HTTP backend); mcpgw vs mcp-proxy (stdio)  run.js
 *   tiers       two tiers: edge (JWT) -> core vs a bare hop -> core vs the core alone vs direct  tiers.js
 *   federation  cross-region: edge a -> core b vs core a vs direct; registry convergence; failover federation.js
 *   toolslist   aggregated tools/list over 100 servers x 50 tools, cached and not                toolslist.js
 *   registry    a registry change (shared Postgres) until a client of /mcp hears list_changed     registry.js
 *   sessions    memory of 10k idle sessions on an edge, memory and Redis session stores            sessions.js
 *   quota       quota decisions per second against Redis (and the memory store)                    quota.js
 *
 * Every figure of a section is measured against its own direct run in the same process tree and run;
 * ratios are what to compare across machines. The load average before and after is in the report.
 *
 *   node dist/bench/all.js [--only overhead,tiers,...] [--skip NAME,...] [--quick] [--out bench/results]
 *                          [--section-timeout S]
 *
 * `--quick` runs every section in a tiny configuration (seconds, not minutes: for smoke tests; the figures
 * mean nothing). Exit status 1 when a section failed or timed out (the others are still reported).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Bar, type BarChart, barChartPng } from './chart.js';
import { spawnChild, stopAll, stopChild } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');

interface Section {
  title: string;
  script: string;
  /** Rough length of a default run, seconds (for the estimate printed first). */
  estimateS: number;
  args(quick: boolean, dir: string): string[];
  /** Where the section leaves its JSON. */
  json(dir: string): string;
}

const SECTIONS = {
  overhead: {
    title: 'Single node: overhead against direct, and against mcp-proxy',
    script: 'run.js',
    estimateS: 150,
    args: (q, dir) => [
      ...(q ? ['--duration', '0.3', '--warmup', '0.1', '--rounds', '1', '--concurrency', '1'] : []),
      ...(!q ? ['--duration', '3', '--warmup', '0.5', '--rounds', '3', '--concurrency', '1,64'] : []),
      '--out',
      dir,
    ],
    json: (dir) => join(dir, 'latest.json'),
  },
  tiers: {
    title: 'Two tiers: edge -> core',
    script: 'tiers.js',
    estimateS: 80,
    args: (q, dir) => [
      ...(q
        ? ['--duration', '0.3', '--warmup', '0.1', '--rounds', '1', '--concurrency', '1']
        : ['--duration', '3', '--warmup', '0.5', '--rounds', '2', '--concurrency', '1,64']),
      '--out',
      dir,
      '--json',
      join(dir, 'tiers.json'),
    ],
    json: (dir) => join(dir, 'tiers.json'),
  },
  federation: {
    title: 'Cross-region, registry convergence and failover',
    script: 'federation.js',
    estimateS: 75,
    args: (q, dir) => [
      ...(q
        ? ['--duration', '0.3', '--warmup', '0.1', '--rounds', '1', '--concurrency', '1', '--changes', '5']
        : [
            '--duration',
            '2',
            '--warmup',
            '0.5',
            '--rounds',
            '3',
            '--concurrency',
            '1,16',
            '--changes',
            '50',
          ]),
      '--json',
      join(dir, 'federation.json'),
    ],
    json: (dir) => join(dir, 'federation.json'),
  },
  toolslist: {
    title: 'Aggregated tools/list',
    script: 'toolslist.js',
    estimateS: 30,
    args: (q, dir) => [
      ...(q ? ['--servers', '10', '--tools', '5', '--cold', '3', '--samples', '20'] : []),
      '--json',
      join(dir, 'toolslist.json'),
    ],
    json: (dir) => join(dir, 'toolslist.json'),
  },
  registry: {
    title: 'Registry changes reaching clients',
    script: 'registry.js',
    estimateS: 15,
    args: (q, dir) => ['--changes', q ? '3' : '20', '--json', join(dir, 'registry.json')],
    json: (dir) => join(dir, 'registry.json'),
  },
  sessions: {
    title: 'Memory of idle sessions per edge',
    script: 'sessions.js',
    estimateS: 150,
    args: (q, dir) => [
      '--only',
      'memory',
      '--memory-role',
      'edge',
      ...(q
        ? ['--sessions', '100', '--memory-stores', 'memory', '--settle', '0.2']
        : ['--sessions', '10000']),
      '--out',
      dir,
    ],
    json: (dir) => join(dir, 'sessions.json'),
  },
  quota: {
    title: 'Quota decisions',
    script: 'quota.js',
    estimateS: 20,
    args: (q, dir) => [
      ...(q ? ['--duration', '0.3', '--samples', '100'] : ['--duration', '3', '--samples', '3000']),
      '--json',
      join(dir, 'quota.json'),
    ],
    json: (dir) => join(dir, 'quota.json'),
  },
} satisfies Record<string, Section>;
type Name = keyof typeof SECTIONS;
const NAMES = Object.keys(SECTIONS) as Name[];
const ALIASES: Record<string, Name[]> = {
  all: NAMES,
  single: ['overhead'],
  'mcp-proxy': ['overhead'],
  'cross-region': ['federation'],
  convergence: ['federation'],
  failover: ['federation'],
  'tools-list': ['toolslist'],
  'list-changed': ['registry'],
  memory: ['sessions'],
  quotas: ['quota'],
};

function usage(msg: string): never {
  process.stderr.write(
    `${msg}\nusage: node dist/bench/all.js [--only ${NAMES.join(',')}] [--skip NAME,...] [--quick] ` +
      `[--out DIR] [--section-timeout S]\n`,
  );
  process.exit(2);
}

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string', multiple: true },
    skip: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(root, 'bench', 'results') },
    'section-timeout': { type: 'string', default: '600' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) usage('mcpgw benchmarks');
const pick = (xs: string[] | undefined): Set<Name> => {
  const out = new Set<Name>();
  for (const s of (xs ?? []).flatMap((x) => x.split(',')).map((x) => x.trim())) {
    if (s === '') continue;
    const names = (NAMES as string[]).includes(s) ? [s as Name] : ALIASES[s];
    if (!names) usage(`unknown section "${s}" (sections: ${NAMES.join(', ')})`);
    for (const n of names) out.add(n);
  }
  return out;
};
const only = pick(opt.only);
const skip = pick(opt.skip);
const selected = NAMES.filter((n) => (only.size === 0 || only.has(n)) && !skip.has(n));
if (selected.length === 0) usage('no section selected');
const timeoutMs = Number(opt['section-timeout']) * 1000;
if (!(timeoutMs > 0)) usage('bad --section-timeout');
const outDir = resolve(opt.out);
const quick = opt.quick;
const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface Outcome {
  name: Name;
  ok: boolean;
  seconds: number;
  /** What the section printed on stdout (its own markdown). */
  text: string;
  data?: Record<string, unknown>;
  error?: string;
}

async function runSection(name: Name, dir: string): Promise<Outcome> {
  const s: Section = SECTIONS[name];
  const t0 = Date.now();
  const child = spawnChild(name, process.execPath, [join(here, s.script), ...s.args(quick, dir)], root);
  let text = '';
  child.proc.stdout?.on('data', (b: Buffer) => (text += b.toString()));
  child.proc.stderr?.on('data', (b: Buffer) => process.stderr.write(b));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    log(`\n${name}: still running after ${timeoutMs / 1000} s: stopping it`);
    void stopChild(child);
  }, timeoutMs);
  const { code, signal } = await child.exited;
  clearTimeout(timer);
  const seconds = (Date.now() - t0) / 1000;
  let data: Record<string, unknown> | undefined;
  try {
    data = JSON.parse(readFileSync(s.json(dir), 'utf8')) as Record<string, unknown>;
  } catch {
    data = undefined;
  }
  const ok = code === 0 && !timedOut && data !== undefined;
  const error = ok
    ? undefined
    : timedOut
      ? `timed out after ${timeoutMs / 1000} s`
      : code !== 0
        ? `exited with ${code ?? signal}`
        : `wrote no ${s.json(dir)}`;
  return { name, ok, seconds, text: text.trim(), ...(data && { data }), ...(error && { error }) };
}

// ---------------------------------------------------------------------------------------------------------
// Reading the sections' JSON (each section's own shape; see its script)

type Obj = Record<string, unknown>;
const arr = (x: unknown): Obj[] => (Array.isArray(x) ? (x as Obj[]) : []);
const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const find = (xs: Obj[], where: Obj): Obj | undefined =>
  xs.find((x) => Object.entries(where).every(([k, v]) => x[k] === v));
const at = (o: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Obj)[k] : undefined), o);

interface Row {
  what: string;
  target: string;
  measured: string;
  met?: boolean;
}

const f3 = (x: number | undefined): string =>
  x === undefined
    ? 'n/a'
    : Math.abs(x) >= 100
      ? x.toFixed(0)
      : Math.abs(x) >= 10
        ? x.toFixed(1)
        : x.toFixed(3);
const ms = (x: number | undefined): string => (x === undefined ? 'n/a' : `${x >= 0 ? '+' : ''}${f3(x)} ms`);
const times = (x: number | undefined): string => (x === undefined ? 'n/a' : `${x.toFixed(2)}×`);
const int = (x: number | undefined): string =>
  x === undefined ? 'n/a' : Math.round(x).toLocaleString('en-US');

function concurrencies(data: Obj | undefined): number[] {
  return [...new Set(arr(data?.ratios).map((r) => num(r.concurrency)!))].filter((c) => c !== undefined);
}

function summaryRows(res: Map<Name, Outcome>): Row[] {
  const rows: Row[] = [];
  const o = res.get('overhead')?.data;
  if (o) {
    for (const c of concurrencies(o)) {
      const r = find(arr(o.ratios), { concurrency: c });
      rows.push({
        what: `single node: p50 added over direct, c=${c} (a bare Node hop alone: ${ms(num(r?.bareHopP50AddedMs))})`,
        target: c === 1 ? '≤ +0.3 ms' : '—',
        measured: `${ms(num(r?.gatewayP50AddedMs))}; ${times(num(r?.gatewayOverDirectRps))} direct's req/s`,
        ...(c === 1 && num(r?.gatewayP50AddedMs) !== undefined && { met: num(r?.gatewayP50AddedMs)! <= 0.3 }),
      });
    }
    for (const c of concurrencies(o)) {
      const r = find(arr(o.ratios), { concurrency: c });
      const g = find(arr(o.summary), { target: 'gateway-stdio', concurrency: c });
      const p = find(arr(o.summary), { target: 'mcp-proxy', concurrency: c });
      const x = num(r?.gatewayOverMcpProxyRps);
      rows.push({
        what: `vs mcp-proxy ${String(at(o, 'environment', 'mcpProxyVersion') ?? '')}, same stdio backend, c=${c}: req/s`,
        target: c === 64 ? '≥ 3×' : '—',
        measured: `${times(x)} (${int(num(g?.rps))} vs ${int(num(p?.rps))}; p50 ${f3(num(g?.p50))} vs ${f3(num(p?.p50))} ms)`,
        ...(c === 64 && x !== undefined && { met: x >= 3 }),
      });
    }
  }
  const t = res.get('tiers')?.data;
  if (t) {
    for (const r of arr(t.ratios)) {
      const c = num(r.concurrency);
      rows.push({
        what: `two tiers (edge, JWT, -> core): p50 added over direct, c=${c}; the edge hop itself (tiers − single)`,
        target: c === 1 ? 'hop ≤ +0.3 ms' : 'hop keeps ≥ 70% req/s',
        measured:
          `${ms(num(r.tiersP50AddedMs))} (hop ${ms(num(r.edgeHopP50Ms))}); ${times(num(r.tiersOverDirectRps))} ` +
          `direct's req/s, ${((num(r.tiersOverSingleRps) ?? NaN) * 100).toFixed(0)}% of single's ` +
          `(a bare hop in front of single, the floor: ${ms(num(r.hopCoreP50AddedMs))}, ` +
          `${((num(r.hopCoreOverSingleRps) ?? NaN) * 100).toFixed(0)}%)`,
        ...(c === 1 && num(r.edgeHopP50Ms) !== undefined && { met: num(r.edgeHopP50Ms)! <= 0.3 }),
        ...(c !== 1 && num(r.tiersOverSingleRps) !== undefined && { met: num(r.tiersOverSingleRps)! >= 0.7 }),
      });
    }
  }
  const fed = res.get('federation')?.data;
  if (fed) {
    for (const r of arr(fed.ratios)) {
      rows.push({
        what: `cross-region (edge a -> core b): p50 added over direct, c=${num(r.concurrency)}; the cross-region hop (− same-region)`,
        target: 'hop ≤ +1 ms',
        measured:
          `${ms(num(r.crossRegionP50AddedMs))} (hop ${ms(num(r.crossRegionHopP50Ms))}; same-region ` +
          `${ms(num(r.sameRegionP50AddedMs))}); ${times(num(r.crossRegionOverDirectRps))} direct's req/s`,
        ...(num(r.crossRegionHopP50Ms) !== undefined && { met: num(r.crossRegionHopP50Ms)! <= 1 }),
      });
    }
    const p99 = num(at(fed, 'convergence', 'p99'));
    rows.push({
      what: `registry convergence region a -> b (${int(num(at(fed, 'convergence', 'changes')))} changes)`,
      target: 'p99 ≤ 100 ms',
      measured: `p50 ${f3(num(at(fed, 'convergence', 'p50')))} ms, p99 ${f3(p99)} ms`,
      ...(p99 !== undefined && { met: p99 <= 100 }),
    });
    const fo = num(fed.failoverMs);
    rows.push({
      what: 'failover: core a SIGKILLed until a call of a server both regions serve succeeds',
      target: '—',
      measured: fo === undefined || fo < 0 ? 'did not recover' : `${f3(fo)} ms`,
    });
  }
  const tl = res.get('toolslist')?.data;
  if (tl) {
    const label = `${num(tl.servers)} servers × ${num(tl.tools)} tools`;
    const cached = num(at(tl, 'cached', 'p50'));
    rows.push({
      what: `aggregated tools/list, ${label}, cached: first page (${num(tl.pageSize)} tools)`,
      target: '≤ 2 ms p50',
      measured: `p50 ${f3(cached)} ms, p99 ${f3(num(at(tl, 'cached', 'p99')))} ms; all ${num(tl.pages)} pages ${f3(num(at(tl, 'allPagesCached', 'p50')))} ms`,
      ...(cached !== undefined && { met: cached <= 2 }),
    });
    rows.push({
      what: `aggregated tools/list, ${label}, not cached (a new session)`,
      target: '—',
      measured: `p50 ${f3(num(at(tl, 'cold', 'p50')))} ms (one backend direct: ${f3(num(at(tl, 'direct', 'p50')))} ms)`,
    });
  }
  const rg = res.get('registry')?.data;
  if (rg) {
    const p99 = num(at(rg, 'added', 'p99'));
    rows.push({
      what: `registry change (a server added on the shared Postgres) until a client of /mcp hears list_changed (${int(num(at(rg, 'added', 'n')))} changes)`,
      target: '≤ 100 ms',
      measured: `p50 ${f3(num(at(rg, 'added', 'p50')))} ms, p99 ${f3(p99)} ms; removed: p50 ${f3(num(at(rg, 'removed', 'p50')))} ms`,
      ...(p99 !== undefined && { met: p99 <= 100 }),
    });
  }
  const se = res.get('sessions')?.data;
  if (se) {
    for (const m of arr(se.memory)) {
      const per10k = num(m.mibPer10k);
      rows.push({
        what: `memory of ${int(num(m.sessions))} idle sessions per ${String(m.role ?? 'single')}, ${String(m.store)} store (scaled to 10k)`,
        target: '≤ 100 MiB',
        measured: m.error
          ? `FAILED: ${String(m.error).split('\n')[0]}`
          : `${f3(per10k)} MiB (${f3(num(m.kibPerSession))} KiB/session)`,
        ...(per10k !== undefined && !m.error && { met: per10k <= 100 }),
      });
    }
  }
  const q = res.get('quota')?.data;
  if (q) {
    const rps = num(at(q, 'redis', 'perSecond'));
    rows.push({
      what: `quota decisions against Redis, concurrency ${num(q.concurrency)} (memory store: ${int(num(at(q, 'memory', 'perSecond')))}/s)`,
      target: '≥ 20,000/s',
      measured: `${int(rps)}/s; sequential p50 ${f3(num(at(q, 'redis', 'p50')))} ms (Redis PING floor ${int(num(at(q, 'ping', 'perSecond')))}/s)`,
      ...(rps !== undefined && { met: rps >= 20_000 }),
    });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------
// Charts

function charts(res: Map<Name, Outcome>, subtitle: string): Record<string, BarChart> {
  const out: Record<string, BarChart> = {};
  const o = res.get('overhead')?.data;
  const t = res.get('tiers')?.data;
  const fed = res.get('federation')?.data;
  const added: Bar[] = [];
  const share: Bar[] = [];
  const push = (label: string, c: unknown, p50: unknown, rps: unknown): void => {
    const series = `concurrency ${String(c)}`;
    if (num(p50) !== undefined) added.push({ label, series, value: num(p50)! });
    if (num(rps) !== undefined) share.push({ label, series, value: num(rps)! });
  };
  for (const r of arr(o?.ratios)) {
    push('bare Node hop', r.concurrency, r.bareHopP50AddedMs, r.bareHopOverDirectRps);
    push('mcpgw single', r.concurrency, r.gatewayP50AddedMs, r.gatewayOverDirectRps);
  }
  for (const r of arr(t?.ratios))
    push('edge -> core', r.concurrency, r.tiersP50AddedMs, r.tiersOverDirectRps);
  for (const r of arr(fed?.ratios)) {
    push('same region', r.concurrency, r.sameRegionP50AddedMs, r.sameRegionOverDirectRps);
    push('cross region', r.concurrency, r.crossRegionP50AddedMs, r.crossRegionOverDirectRps);
  }
  const note = `${subtitle}; each against the direct run of its own section`;
  if (added.length > 0)
    out['overhead-p50'] = {
      title: 'p50 added over a direct connection',
      subtitle: note,
      unit: 'ms',
      bars: added,
    };
  if (share.length > 0)
    out['overhead-throughput'] = {
      title: 'Throughput as a share of a direct connection',
      subtitle: note,
      unit: '× direct req/s',
      bars: share,
    };
  const proxy: Bar[] = [];
  for (const s of arr(o?.summary)) {
    const label = s.target === 'gateway-stdio' ? 'mcpgw' : s.target === 'mcp-proxy' ? 'mcp-proxy' : undefined;
    if (label && num(s.rps) !== undefined)
      proxy.push({ label, series: `concurrency ${String(s.concurrency)}`, value: num(s.rps)! });
  }
  if (proxy.length > 0)
    out['mcp-proxy'] = {
      title: 'mcpgw vs mcp-proxy, same stdio backend',
      subtitle,
      unit: 'req/s',
      bars: proxy,
    };
  const tl = res.get('toolslist')?.data;
  if (tl) {
    const bars: Bar[] = [];
    for (const [key, label] of [
      ['direct', 'one backend, direct'],
      ['cached', 'cached, first page'],
      ['allPagesCached', 'cached, all pages'],
      ['cold', 'not cached, first page'],
    ] as const)
      for (const p of ['p50', 'p99'] as const) {
        const v = num(at(tl, key, p));
        if (v !== undefined) bars.push({ label, series: p, value: v });
      }
    out.toolslist = {
      title: `Aggregated tools/list, ${num(tl.servers)} servers × ${num(tl.tools)} tools`,
      subtitle,
      unit: 'ms',
      bars,
      rule: { value: 2, label: 'cached target 2 ms' },
    };
  }
  const se = res.get('sessions')?.data;
  const mem = arr(se?.memory).filter((m) => num(m.mibPer10k) !== undefined);
  if (mem.length > 0)
    out.sessions = {
      title: 'Memory of 10k idle sessions per edge',
      subtitle,
      unit: 'MiB of RSS per 10k sessions',
      bars: mem.map((m) => ({ label: `${String(m.store)} store`, value: num(m.mibPer10k)! })),
      rule: { value: 100, label: 'target 100 MiB' },
    };
  const q = res.get('quota')?.data;
  if (q) {
    const bars: Bar[] = [];
    for (const [key, label] of [
      ['redis', 'Redis store'],
      ['memory', 'memory store'],
      ['ping', 'Redis PING (floor)'],
    ] as const) {
      const v = num(at(q, key, 'perSecond'));
      if (v !== undefined) bars.push({ label, value: v });
    }
    out.quota = {
      title: 'Quota decisions per second',
      subtitle: `${subtitle}; concurrency ${num(q.concurrency)}`,
      unit: 'per second',
      bars,
      rule: { value: 20_000, label: 'target 20,000/s (Redis)' },
    };
  }
  const rg = res.get('registry')?.data;
  if (fed || rg) {
    const bars: Bar[] = [];
    for (const p of ['p50', 'p99'] as const) {
      const v = num(at(fed, 'convergence', p));
      if (v !== undefined) bars.push({ label: `convergence ${p}`, value: v });
    }
    for (const p of ['p50', 'p99'] as const) {
      const v = num(at(rg, 'added', p));
      if (v !== undefined) bars.push({ label: `list_changed ${p}`, value: v });
    }
    if (num(fed?.failoverMs) !== undefined && num(fed?.failoverMs)! >= 0)
      bars.push({ label: 'failover', value: num(fed?.failoverMs)! });
    if (bars.length > 0)
      out.federation = {
        title: 'Registry convergence (a -> b), list_changed to clients, failover',
        subtitle,
        unit: 'ms',
        bars,
        rule: { value: 100, label: 'target 100 ms (convergence, list_changed)' },
      };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------

const loadavg = (): string =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(', ');

async function main(): Promise<number> {
  const startedAt = new Date();
  const loadBefore = loadavg();
  const est = selected.reduce((a, n) => a + (quick ? 8 : SECTIONS[n].estimateS), 0);
  log(
    `mcpgw benchmarks: ${selected.join(', ')}; about ${Math.ceil(est / 60)} min; load average ${loadBefore}`,
  );
  mkdirSync(outDir, { recursive: true });
  const work = join(outDir, 'sections');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const res = new Map<Name, Outcome>();
  for (const name of selected) {
    log(`\n===== ${name}: ${SECTIONS[name].title}`);
    const outcome = await runSection(name, work);
    res.set(name, outcome);
    log(
      `===== ${name}: ${outcome.ok ? 'done' : `FAILED (${outcome.error})`} in ${outcome.seconds.toFixed(0)} s`,
    );
  }
  const loadAfter = loadavg();
  const elapsed = (Date.now() - startedAt.getTime()) / 1000;
  const cpu = os.cpus();
  const env =
    `${startedAt.toISOString()} · Node ${process.version} · ${os.platform()} ${os.arch()} · ${cpu.length} CPU(s) ` +
    `(${cpu[0]?.model.trim() ?? '?'}) · loopback · load average (1, 5, 15 min) ${loadBefore} before, ${loadAfter} after` +
    ` · took ${elapsed.toFixed(0)} s${quick ? ' · QUICK MODE: the figures mean nothing' : ''}`;

  // Charts first, so the report can say which exist.
  const chartDir = join(outDir, 'charts');
  rmSync(chartDir, { recursive: true, force: true });
  mkdirSync(chartDir, { recursive: true });
  const drawn: string[] = [];
  const subtitle = `${startedAt.toISOString().slice(0, 16)}Z, ${cpu.length} CPUs, load ${loadBefore.split(', ')[0]}`;
  for (const [file, chart] of Object.entries(charts(res, subtitle))) {
    try {
      writeFileSync(join(chartDir, `${file}.png`), await barChartPng(chart));
      drawn.push(file);
    } catch (err) {
      log(`chart ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  const L: string[] = ['# mcpgw benchmarks', '', env, ''];
  L.push(
    'Reproduce with `npm run bench` (all sections, about 6-8 minutes on 2 cores) or ' +
      '`npm run bench -- --only tiers,quota`; see docs/performance.md. Every ratio is against a direct ' +
      'connection measured in the same section of the same run.',
  );
  L.push('', '## Summary', '', '| what | target | measured | met |', '| --- | --- | --- | --- |');
  for (const r of summaryRows(res))
    L.push(
      `| ${r.what} | ${r.target} | ${r.measured} | ${r.met === undefined ? '—' : r.met ? 'yes' : 'no'} |`,
    );
  const failed = [...res.values()].filter((x) => !x.ok);
  if (failed.length > 0) {
    L.push('', '**Sections that failed:**', '');
    for (const x of failed) L.push(`- ${x.name}: ${x.error}`);
  }
  if (drawn.length > 0) {
    L.push('', '## Charts', '');
    for (const f of drawn) L.push(`![${f}](charts/${f}.png)`, '');
  }
  for (const name of selected) {
    const x = res.get(name)!;
    L.push('', `## ${SECTIONS[name].title} (\`${name}\`, ${x.seconds.toFixed(0)} s)`, '');
    // run.js and sessions.js print their whole report (with its own title); the others print tables.
    const text = x.text.replace(/^# .*$/gm, '').trim();
    L.push(text.length > 0 ? text.replace(/^## /gm, '### ') : '(nothing printed)');
    if (!x.ok) L.push('', `**FAILED**: ${x.error}`);
  }
  const md = `${L.join('\n')}\n`;
  writeFileSync(join(outDir, 'results.md'), md);
  writeFileSync(
    join(outDir, 'results.json'),
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        elapsedSeconds: elapsed,
        quick,
        loadAverage: { before: loadBefore, after: loadAfter },
        environment: { node: process.version, cpus: cpu.length, cpuModel: cpu[0]?.model.trim() },
        summary: summaryRows(res),
        sections: Object.fromEntries(
          [...res].map(([n, x]) => [n, { ok: x.ok, seconds: x.seconds, error: x.error, data: x.data }]),
        ),
        charts: drawn.map((f) => `charts/${f}.png`),
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(md);
  log(`\nwritten: ${join(outDir, 'results.md')}, results.json and ${drawn.length} chart(s) in ${chartDir}`);
  return failed.length > 0 ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`\nBENCH FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  await stopAll();
}
process.exit(code);
