/**
 * `npm run bench:tiers`: what the edge -> core hop costs. Four targets in one run, measured in turn for a few
 * rounds at each concurrency, medians reported:
 *
 *   direct     the fast-http backend itself
 *   bare-hop   node:http + undici in front of it (the floor of any extra HTTP hop)
 *   single     role single (edge and core in one process)  -> fast-http     ("core -> backend")
 *   tiers      role edge -> role core (internal token, keep-alive pool) -> fast-http
 *
 * The hop's cost is `tiers - single` (target: <= 0.3 ms p50 at concurrency 1); `bare-hop - direct` beside it
 * shows what an HTTP hop costs at all on this machine. Plain HTTP between the tiers (TLS adds only
 * handshakes, which the pool does once per connection).
 *
 *   node dist/bench/tiers.js [--duration 4] [--warmup 1] [--rounds 3] [--concurrency 1,16] [--out bench/results]
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runLoad } from './loadgen.js';
import { type Child, freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const main = join(root, 'dist', 'cli', 'main.js');
const node = process.execPath;

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,16' },
    out: { type: 'string', default: 'bench/results' },
  },
});
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);

type Key = 'direct' | 'bare-hop' | 'single' | 'tiers';
const urls = new Map<Key, string>();

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function startGateway(name: string, dir: string, yaml: string[], port: number): Promise<Child> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, [...yaml, ''].join('\n'));
  const c = spawnChild(name, node, [main, 'start', '--config', file], root);
  await waitForHttp(c, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
  return c;
}

async function setUp(dir: string): Promise<void> {
  const backend = spawnChild('fast-http', node, [join(here, 'backends', 'fast-http.js'), '--port', '0']);
  const backendUrl = await waitForListening(backend);
  urls.set('direct', backendUrl);
  const hop = spawnChild('bare-hop', node, [
    join(here, 'backends', 'bare-hop.js'),
    '--port',
    '0',
    '--target',
    backendUrl,
    '--connections',
    String(Math.max(...concurrencies)),
  ]);
  urls.set('bare-hop', `${await waitForListening(hop)}${new URL(backendUrl).pathname}`);

  const pair = generateKeyPairSync('ed25519');
  const priv = join(dir, 'edge.key.pem');
  const pub = join(dir, 'edge.pub.pem');
  writeFileSync(priv, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  const servers = [
    'servers:',
    '  - name: fasthttp',
    '    transport: streamable-http',
    `    url: ${JSON.stringify(backendUrl)}`,
  ];
  const [singlePort, corePort, edgePort] = [await freePort(), await freePort(), await freePort()];
  await startGateway(
    'single',
    dir,
    ['role: single', `listen: { host: 127.0.0.1, port: ${singlePort} }`, 'log: { level: warn }', ...servers],
    singlePort,
  );
  urls.set('single', `http://127.0.0.1:${singlePort}/servers/fasthttp/mcp`);
  await startGateway(
    'core',
    dir,
    [
      'role: core',
      `listen: { host: 127.0.0.1, port: ${corePort} }`,
      'log: { level: warn }',
      `internal: { id: core-1, trustedKeys: [${JSON.stringify(pub)}] }`,
      ...servers,
    ],
    corePort,
  );
  await startGateway(
    'edge',
    dir,
    [
      'role: edge',
      `listen: { host: 127.0.0.1, port: ${edgePort} }`,
      'log: { level: warn }',
      `cores: [{ region: local, id: core-1, url: "http://127.0.0.1:${corePort}" }]`,
      `internal: { signingKey: ${JSON.stringify(priv)} }`,
    ],
    edgePort,
  );
  urls.set('tiers', `http://127.0.0.1:${edgePort}/servers/fasthttp/mcp`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function run(): Promise<number> {
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-tiers-'));
  try {
    await setUp(dir);
    const results: { key: Key; c: number; p50: number; p99: number; rps: number; errors: number }[] = [];
    for (const c of concurrencies)
      for (let r = 1; r <= rounds; r++)
        for (const [key, url] of urls) {
          const res = await runLoad({ url, concurrency: c, durationMs, warmupMs });
          results.push({ key, c, p50: res.p50, p99: res.p99, rps: res.rps, errors: res.errors });
          log(
            `  ${key.padEnd(9)} c=${c} round ${r}: p50 ${res.p50.toFixed(3)} ms  ${res.rps.toFixed(0)} req/s${res.errors ? `  ERRORS ${res.errors}` : ''}`,
          );
        }
    const lines = ['| target | concurrency | p50 ms | p99 ms | req/s |', '| --- | --- | --- | --- | --- |'];
    const m = (key: Key, c: number, f: 'p50' | 'p99' | 'rps') =>
      median(results.filter((x) => x.key === key && x.c === c).map((x) => x[f]));
    for (const c of concurrencies)
      for (const key of urls.keys())
        lines.push(
          `| ${key} | ${c} | ${m(key, c, 'p50').toFixed(3)} | ${m(key, c, 'p99').toFixed(3)} | ${m(key, c, 'rps').toFixed(0)} |`,
        );
    for (const c of concurrencies)
      lines.push(
        '',
        `c=${c}: edge->core hop adds ${(m('tiers', c, 'p50') - m('single', c, 'p50')).toFixed(3)} ms p50 ` +
          `(a bare hop: ${(m('bare-hop', c, 'p50') - m('direct', c, 'p50')).toFixed(3)} ms)`,
      );
    const text = `# edge -> core hop (${new Date().toISOString()}, ${os.cpus().length} CPUs)\n\n${lines.join('\n')}\n`;
    process.stdout.write(text);
    mkdirSync(opt.out, { recursive: true });
    writeFileSync(join(opt.out, 'tiers-latest.md'), text);
    return results.some((x) => x.errors > 0) ? 1 : 0;
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

run().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:tiers failed: ${(err as Error)?.stack ?? String(err)}\n`);
    void stopAll().finally(() => process.exit(1));
  },
);
