/**
 * `node dist/bench/toolslist.js`: the aggregated tools/list on `/mcp` over many servers (issue 7's target:
 * <= 2 ms p50 for 100 servers x 50 tools when cached). One `many-servers` backend process serves
 * `--servers` MCP servers of `--tools` tools each; one gateway (role single, no auth) has them all as
 * Streamable HTTP servers. Raw JSON-RPC over keep-alive HTTP:
 *
 *   direct     tools/list of one backend server (its 50 tools), the floor
 *   cold       a fresh client session each time: initialize, then the first tools/list page, which opens
 *              the session's backend sessions and fetches every backend's list (the backend counts the
 *              fetches: the bench checks they happened, i.e. nothing was cached)
 *   cached     the first page again in one session (the catalogs cached; the merge, renaming and
 *              governance still run per call)
 *   all pages  every page in turn (cursor after cursor) in that session, with the count of tools checked
 *
 *   node dist/bench/toolslist.js [--servers 100] [--tools 50] [--cold 20] [--samples 300] [--json FILE]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool, request } from 'undici';
import { cpuMs, freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const node = process.execPath;

const { values: opt } = parseArgs({
  options: {
    servers: { type: 'string', default: '100' },
    tools: { type: 'string', default: '50' },
    cold: { type: 'string', default: '20' },
    samples: { type: 'string', default: '300' },
    json: { type: 'string' },
  },
});
const servers = Number(opt.servers);
const tools = Number(opt.tools);
const coldRuns = Number(opt.cold);
const samples = Number(opt.samples);
for (const [k, v] of Object.entries({ servers, tools, cold: coldRuns, samples }))
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`--${k} must be a positive integer\n`);
    process.exit(2);
  }
const PROTOCOL = '2025-11-25';
const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface Rpc {
  result?: Record<string, unknown>;
  error?: { message?: string };
}

/** One raw MCP client session over a keep-alive pool; JSON and SSE answers alike. */
class Session {
  private id = 0;
  private sid: string | undefined;
  constructor(
    private readonly pool: Pool,
    private readonly path: string,
  ) {}

  async open(): Promise<void> {
    await this.call('initialize', {
      protocolVersion: PROTOCOL,
      capabilities: {},
      clientInfo: { name: 'mcpgw-bench', version: '1' },
    });
    await this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  async call(method: string, params?: object): Promise<Record<string, unknown>> {
    const id = ++this.id;
    const res = await this.send({ jsonrpc: '2.0', id, method, ...(params && { params }) });
    if (!res || res.error || !res.result)
      throw new Error(`${method}: ${res?.error?.message ?? 'no result'} (${this.path})`);
    return res.result;
  }

  async close(): Promise<void> {
    if (!this.sid) return;
    const res = await this.pool.request({ path: this.path, method: 'DELETE', headers: this.headers() });
    await res.body.dump();
  }

  private headers(): Record<string, string> {
    return {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': PROTOCOL,
      ...(this.sid && { 'mcp-session-id': this.sid }),
    };
  }

  private async send(body: object): Promise<Rpc | undefined> {
    const res = await this.pool.request({
      path: this.path,
      method: 'POST',
      headers: this.headers(),
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300)
      throw new Error(`HTTP ${res.statusCode} on ${this.path}: ${text.slice(0, 300)}`);
    const sid = res.headers['mcp-session-id'];
    if (typeof sid === 'string') this.sid = sid;
    if (res.statusCode === 202 || text === '') return undefined;
    if (String(res.headers['content-type']).startsWith('text/event-stream')) {
      const data = text
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .filter((l) => l.includes('"id"'));
      return JSON.parse(data.at(-1) ?? '{}') as Rpc;
    }
    return JSON.parse(text) as Rpc;
  }
}

function stats(xs: number[]): { p50: number; p99: number; n: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  return { p50: q(0.5), p99: q(0.99), n: s.length };
}

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const v = await f();
  return [performance.now() - t, v];
}

async function listCalls(statsUrl: string): Promise<number> {
  const res = await request(statsUrl);
  return ((await res.body.json()) as { listCalls: number }).listCalls;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-toolslist-'));
  try {
    const backend = spawnChild('many-servers', node, [
      join(here, 'backends', 'many-servers.js'),
      '--servers',
      String(servers),
      '--tools',
      String(tools),
      '--port',
      '0',
    ]);
    const base = await waitForListening(backend);
    const statsUrl = `${new URL(base).origin}/stats`;
    const port = await freePort();
    const yaml = [
      'role: single',
      `listen: { host: 127.0.0.1, port: ${port} }`,
      'auth: { mode: none }',
      'store: { kind: memory }',
      'log: { level: warn }',
      'servers:',
      ...Array.from({ length: servers }, (_, i) => [
        `  - name: s${i}`,
        '    transport: streamable-http',
        `    url: ${JSON.stringify(`${base}/${i}/mcp`)}`,
      ]).flat(),
      '',
    ].join('\n');
    writeFileSync(join(dir, 'mcpgw.yaml'), yaml);
    // MCPGW_BENCH_PROFILE=<dir>: the gateway writes a CPU profile there when it stops (node --cpu-prof).
    const prof = process.env.MCPGW_BENCH_PROFILE;
    const gw = spawnChild(
      'mcpgw',
      node,
      [
        ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []),
        join(root, 'dist', 'cli', 'main.js'),
        'start',
        '--config',
        join(dir, 'mcpgw.yaml'),
      ],
      root,
    );
    const gwUrl = `http://127.0.0.1:${port}`;
    await waitForHttp(gw, `${gwUrl}/readyz`, (s) => s === 200, 60_000);
    log(`many-servers ${base} (${servers} x ${tools} tools), mcpgw ${gwUrl} (pid ${gw.pid})`);

    // The floor: one backend's own tools/list.
    const bpool = new Pool(new URL(base).origin, { connections: 1 });
    const b = new Session(bpool, '/s/0/mcp');
    await b.open();
    for (let i = 0; i < 50; i++) await b.call('tools/list');
    const direct: number[] = [];
    for (let i = 0; i < samples; i++) direct.push((await timed(() => b.call('tools/list')))[0]);
    await b.close();

    const pool = new Pool(gwUrl, { connections: 2 });
    // Cold: every session new, so every backend session and catalog is new too.
    const cold: number[] = [];
    const coldInit: number[] = [];
    let expectedTools = 0;
    for (let i = 0; i < coldRuns + 2; i++) {
      const s = new Session(pool, '/mcp');
      const before = await listCalls(statsUrl);
      const [ti] = await timed(() => s.open());
      const [tl, first] = await timed(() => s.call('tools/list'));
      const fetched = (await listCalls(statsUrl)) - before;
      if (fetched < servers)
        throw new Error(`cold tools/list fetched ${fetched} backend lists, expected ${servers}: cached?`);
      expectedTools = Math.min(servers * tools, (first.tools as unknown[]).length);
      await s.close();
      if (i < 2) continue; // warm-up: JIT, connection pools
      coldInit.push(ti);
      cold.push(tl);
    }

    // Cached: one session, the first page again and again; then the full walk.
    const s = new Session(pool, '/mcp');
    await s.open();
    await s.call('tools/list');
    const before = await listCalls(statsUrl);
    for (let i = 0; i < 50; i++) await s.call('tools/list');
    const cached: number[] = [];
    let pageSize = 0;
    // The gateway's CPU time per call: less at the mercy of other processes than the wall clock.
    const cpu0 = cpuMs(gw.pid);
    for (let i = 0; i < samples; i++) {
      const [t, r] = await timed(() => s.call('tools/list'));
      cached.push(t);
      pageSize = (r.tools as unknown[]).length;
    }
    const cpu1 = cpuMs(gw.pid);
    const cachedCpuMs = cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / samples : undefined;
    const walk: number[] = [];
    let pages = 0;
    const walks = Math.max(3, Math.ceil(samples / 20));
    for (let i = 0; i < walks; i++) {
      let count = 0;
      pages = 0;
      const [t] = await timed(async () => {
        let cursor: unknown;
        do {
          const r = await s.call('tools/list', cursor === undefined ? undefined : { cursor });
          count += (r.tools as unknown[]).length;
          cursor = r.nextCursor;
          pages++;
        } while (typeof cursor === 'string');
      });
      if (count !== servers * tools)
        throw new Error(`the walk saw ${count} tools, expected ${servers * tools}`);
      walk.push(t);
    }
    const refetched = (await listCalls(statsUrl)) - before;
    if (refetched !== 0) throw new Error(`cached tools/list fetched ${refetched} backend lists`);
    await s.close();
    await pool.close();
    await bpool.close();
    void expectedTools;

    const r = (x: number) => Math.round(x * 1000) / 1000;
    const out = {
      servers,
      tools,
      totalTools: servers * tools,
      pageSize,
      pages,
      direct: mapR(stats(direct), r),
      coldInitialize: mapR(stats(coldInit), r),
      cold: mapR(stats(cold), r),
      cached: mapR(stats(cached), r),
      cachedGatewayCpuMsPerCall: cachedCpuMs === undefined ? null : r(cachedCpuMs),
      allPagesCached: mapR(stats(walk), r),
      targetCachedP50Ms: 2,
    };
    const md = [
      `| tools/list (${servers} servers x ${tools} tools) | p50 ms | p99 ms | samples |`,
      '| --- | --: | --: | --: |',
      `| direct: one backend (${tools} tools) | ${out.direct.p50} | ${out.direct.p99} | ${out.direct.n} |`,
      `| mcpgw /mcp, new session: initialize | ${out.coldInitialize.p50} | ${out.coldInitialize.p99} | ${out.coldInitialize.n} |`,
      `| mcpgw /mcp, not cached: first page (${pageSize} tools) | ${out.cold.p50} | ${out.cold.p99} | ${out.cold.n} |`,
      `| mcpgw /mcp, cached: first page (${pageSize} tools) | ${out.cached.p50} | ${out.cached.p99} | ${out.cached.n} |`,
      `| (gateway CPU per cached first page: ${out.cachedGatewayCpuMsPerCall ?? 'n/a'} ms) | | | |`,
      `| mcpgw /mcp, cached: all ${pages} pages (${servers * tools} tools) | ${out.allPagesCached.p50} | ${out.allPagesCached.p99} | ${out.allPagesCached.n} |`,
    ].join('\n');
    process.stdout.write(`${md}\n`);
    if (opt.json) writeFileSync(opt.json, `${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

function mapR<T extends Record<string, number>>(o: T, f: (x: number) => number): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, k === 'n' ? v : f(v)])) as T;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(`toolslist bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    void stopAll().finally(() => process.exit(1));
  },
);
