/**
 * What quotas add per request through the gateway, measured in one run: the same fast-http backend behind
 * three gateway processes, quotas off, quotas on with the memory store (the single-node default), and
 * quotas on with the Redis store. Every reference-architecture dimension is on (user, global, concurrency
 * at the HTTP layer; server per replica and tool in the pipeline), with limits high enough that nothing
 * is refused: the bench measures the decisions, not refusals. Targets run in turn (A B C A B C ...),
 * `--rounds` times; the table shows the median of the rounds' p50 and p99, and the p50 each quota setup
 * adds over quotas off.
 *
 * Each gateway is first loaded on its own for `--prewarm` seconds (not measured), and every other round
 * runs the targets in reverse order; the last column is the median over rounds of each round's difference.
 *
 *   node dist/bench/quota-gateway.js [--duration 3] [--rounds 3] [--prewarm 3] [--concurrency 1] [--redis-url URL]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { runLoad, type LoadResult } from './loadgen.js';
import { freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    prewarm: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1' },
    'redis-url': { type: 'string', default: process.env.MCPGW_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
});
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const node = process.execPath;
const log = (s: string) => process.stderr.write(`${s}\n`);

const HIGH = '{ limit: 1000000000, windowMs: 3600000 }';
const setups: Record<string, string[]> = {
  'quotas off': ['quotas: { enabled: false }'],
  'quotas on, memory': [
    `quotas: { enabled: true, store: memory, user: ${HIGH}, global: ${HIGH}, tool: ${HIGH}, server: ${HIGH}, concurrency: { perUser: 1000000 } }`,
  ],
  'quotas on, redis': [
    `redis: { url: ${JSON.stringify(values['redis-url'])}, keyPrefix: bench-${randomBytes(4).toString('hex')} }`,
    `quotas: { enabled: true, store: redis, user: ${HIGH}, global: ${HIGH}, tool: ${HIGH}, server: ${HIGH}, concurrency: { perUser: 1000000 } }`,
  ],
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-quota-'));
  try {
    const backend = spawnChild('fast-http', node, [join(here, 'backends', 'fast-http.js'), '--port', '0']);
    const backendUrl = await waitForListening(backend);
    const urls: Record<string, string> = {};
    for (const [name, extra] of Object.entries(setups)) {
      const port = await freePort();
      const file = join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(
        file,
        [
          'role: single',
          `listen: { host: 127.0.0.1, port: ${port} }`,
          'auth: { mode: none }',
          'log: { level: warn }',
          'servers:',
          '  - name: fasthttp',
          '    transport: streamable-http',
          `    url: ${JSON.stringify(backendUrl)}`,
          ...extra,
          '',
        ].join('\n'),
      );
      const gw = spawnChild(name, node, [join(root, 'dist/cli/main.js'), 'start', '--config', file], root);
      await waitForHttp(gw, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
      urls[name] = `http://127.0.0.1:${port}/servers/fasthttp/mcp`;
    }
    // Without a pre-warm the first round measured code V8 had not optimised yet (p50 1.1-1.4 ms in the
    // first round against 0.25-0.65 after).
    for (const url of Object.values(urls))
      await runLoad({ url, concurrency: 8, durationMs: Number(values.prewarm) * 1000, warmupMs: 0 });
    const runs: Record<string, LoadResult[]> = Object.fromEntries(Object.keys(urls).map((k) => [k, []]));
    for (let r = 0; r < Number(values.rounds); r++)
      for (const [name, url] of r % 2 ? Object.entries(urls).reverse() : Object.entries(urls)) {
        const res = await runLoad({
          url,
          concurrency: Number(values.concurrency),
          durationMs: Number(values.duration) * 1000,
          warmupMs: 500,
        });
        if (res.errors > 0) throw new Error(`${name}: ${res.errors} errors: ${res.errorSamples.join('; ')}`);
        runs[name]!.push(res);
        log(`round ${r + 1} ${name}: p50 ${res.p50.toFixed(3)} ms, ${Math.round(res.rps)}/s`);
      }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const base = median(runs['quotas off']!.map((x) => x.p50));
    const load = os.loadavg().map((l) => l.toFixed(1));
    console.log(
      `\nconcurrency ${values.concurrency}, ${values.rounds} rounds of ${values.duration} s, load average ${load.join(' ')}\n`,
    );
    console.log('| setup | p50 ms | p99 ms | requests/s | p50 added ms | p50 added per round ms |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    const off = runs['quotas off']!;
    for (const [name, rs] of Object.entries(runs)) {
      const p50 = median(rs.map((x) => x.p50));
      const perRound = median(rs.map((x, i) => x.p50 - off[i]!.p50));
      console.log(
        `| ${name} | ${p50.toFixed(3)} | ${median(rs.map((x) => x.p99)).toFixed(3)} | ${Math.round(median(rs.map((x) => x.rps)))} | ${name === 'quotas off' ? '' : (p50 - base).toFixed(3)} | ${name === 'quotas off' ? '' : perRound.toFixed(3)} |`,
      );
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (err: unknown) => {
  log(String(err instanceof Error ? err.stack : err));
  await stopAll();
  process.exit(1);
});
