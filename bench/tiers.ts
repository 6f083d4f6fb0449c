/**
 * `npm run bench:tiers`: what the edge -> core hop costs, JWT authentication on at the edge. Four targets in
 * one run, measured in turn for a few rounds at each concurrency, medians reported:
 *
 *   direct     the fast-http backend itself
 *   bare-hop   node:http + undici in front of it (the floor of any extra HTTP hop)
 *   core       the core's work alone, in one process (role single, no auth)       ("core -> backend")
 *   hop-core   the bare hop in front of "core" (the floor of any edge: an extra process that does nothing)
 *   tiers      role edge (JWT checked against a JWKS this bench serves) -> role core (internal token,
 *              keep-alive pool) -> fast-http                                     ("edge -> core -> backend")
 *
 * The hop's cost is `tiers - core` (targets: <= 0.3 ms p50 at concurrency 1, >= 70% of the throughput at
 * concurrency 64); it includes the JWT check, the internal token and the second process. `bare-hop -
 * direct` beside it shows what an HTTP hop costs at all on this machine, and `hop-core - core` what it costs
 * in front of the core: no edge can do better than that hop, so it is the floor under the edge's figures. Plain HTTP between the tiers (TLS
 * adds only handshakes, which the pool does once per connection).
 *
 *   node dist/bench/tiers.js [--duration 4] [--warmup 1] [--rounds 3] [--concurrency 1,64] [--out bench/results]
 *                            [--json FILE] [--targets direct,bare-hop,core,hop-core,tiers]
 *
 * `--targets` measures only some of them (a diagnosis, e.g. strace on one process); the hop's summary lines
 * need all five.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT } from 'jose';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runLoad } from './loadgen.js';
import { type Child, cpuMs, freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const main = join(root, 'dist', 'cli', 'main.js');
const node = process.execPath;

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,64' },
    out: { type: 'string', default: 'bench/results' },
    json: { type: 'string' },
    targets: { type: 'string', default: 'direct,bare-hop,core,hop-core,tiers' },
  },
});
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const rounds = Number(opt.rounds);
const concurrencies = opt.concurrency.split(',').map(Number);
const ALL_TARGETS = ['direct', 'bare-hop', 'core', 'hop-core', 'tiers'] as const;
const targets = new Set(opt.targets.split(','));
for (const t of targets)
  if (!(ALL_TARGETS as readonly string[]).includes(t))
    throw new Error(`--targets: unknown target ${t} (known: ${ALL_TARGETS.join(', ')})`);

type Key = 'direct' | 'bare-hop' | 'core' | 'hop-core' | 'tiers';
const urls = new Map<Key, string>();
/** The client's headers per target: the tiers' edge wants a bearer JWT. */
const headers = new Map<Key, Record<string, string>>();
const ISSUER = 'https://issuer.bench.invalid';
const AUDIENCE = 'https://mcpgw.bench.invalid';

/** A local authorization server's JWKS, and a token it issued (valid for the whole run). */
async function serveJwks(): Promise<{ url: string; token: string; close: () => void }> {
  const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'bench-1', alg: 'ES256', use: 'sig' };
  const body = JSON.stringify({ keys: [jwk] });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ scope: 'mcp', tenant: 'default' })
    .setProtectedHeader({ alg: 'ES256', kid: 'bench-1', typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('bench-user')
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(pair.privateKey);
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/jwks.json`, token, close: () => server.close() };
}

const closers: (() => void)[] = [];

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The processes of each target whose CPU time is measured (the gateway's; the backend's is the same for all). */
const procsOf = new Map<Key, Child[]>();

/**
 * MCPGW_BENCH_PROFILE=<dir>: the edge (or the processes MCPGW_BENCH_PROFILE_OF names: edge, core, single,
 * bare-hop, hop-core) writes a CPU profile in <dir>/<name> when it stops (node --cpu-prof).
 */
function profileFlags(name: string): string[] {
  const profiled = (process.env.MCPGW_BENCH_PROFILE_OF ?? 'edge').split(',');
  const prof = profiled.includes(name) && process.env.MCPGW_BENCH_PROFILE;
  return prof ? ['--cpu-prof', `--cpu-prof-dir=${join(prof, name)}`] : [];
}

async function startGateway(name: string, dir: string, yaml: string[], port: number): Promise<Child> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, [...yaml, ''].join('\n'));
  const c = spawnChild(name, node, [...profileFlags(name), main, 'start', '--config', file], root);
  await waitForHttp(c, `http://127.0.0.1:${port}/readyz`, (s) => s === 200, 30_000);
  return c;
}

/** The bare hop (bench/backends/bare-hop.ts) in front of `target`, with a connection per virtual client. */
async function startBareHop(name: string, target: string): Promise<{ child: Child; url: string }> {
  const child = spawnChild(name, node, [
    ...profileFlags(name),
    join(here, 'backends', 'bare-hop.js'),
    '--port',
    '0',
    '--target',
    target,
    '--connections',
    String(Math.max(...concurrencies)),
  ]);
  return { child, url: await waitForListening(child) };
}

async function setUp(dir: string): Promise<void> {
  const backend = spawnChild('fast-http', node, [join(here, 'backends', 'fast-http.js'), '--port', '0']);
  const backendUrl = await waitForListening(backend);
  urls.set('direct', backendUrl);
  const hop = await startBareHop('bare-hop', backendUrl);
  urls.set('bare-hop', `${hop.url}${new URL(backendUrl).pathname}`);
  procsOf.set('bare-hop', [hop.child]);

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
  const jwks = await serveJwks();
  closers.push(jwks.close);
  const [singlePort, corePort, edgePort] = [await freePort(), await freePort(), await freePort()];
  const single = await startGateway(
    'single',
    dir,
    ['role: single', `listen: { host: 127.0.0.1, port: ${singlePort} }`, 'log: { level: warn }', ...servers],
    singlePort,
  );
  urls.set('core', `http://127.0.0.1:${singlePort}/servers/fasthttp/mcp`);
  procsOf.set('core', [single]);
  const hopCore = await startBareHop('hop-core', `http://127.0.0.1:${singlePort}`);
  urls.set('hop-core', `${hopCore.url}/servers/fasthttp/mcp`);
  procsOf.set('hop-core', [hopCore.child, single]);
  const core = await startGateway(
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
  const edge = await startGateway(
    'edge',
    dir,
    [
      'role: edge',
      `listen: { host: 127.0.0.1, port: ${edgePort} }`,
      'log: { level: warn }',
      `cores: [{ region: local, id: core-1, url: "http://127.0.0.1:${corePort}" }]`,
      `internal: { signingKey: ${JSON.stringify(priv)} }`,
      'auth:',
      '  mode: jwt',
      `  jwt: { issuer: ${JSON.stringify(ISSUER)}, audience: ${JSON.stringify(AUDIENCE)}, jwksUrl: ${JSON.stringify(jwks.url)}, algorithms: [ES256] }`,
    ],
    edgePort,
  );
  urls.set('tiers', `http://127.0.0.1:${edgePort}/servers/fasthttp/mcp`);
  procsOf.set('tiers', [edge, core]);
  headers.set('tiers', { authorization: `Bearer ${jwks.token}` });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function run(): Promise<number> {
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-tiers-'));
  try {
    await setUp(dir);
    const results: {
      key: Key;
      c: number;
      p50: number;
      p99: number;
      rps: number;
      errors: number;
      /** CPU ms per request of each of the target's own processes (tiers: edge, core). */
      cpu: (number | undefined)[];
    }[] = [];
    const measured = [...urls.keys()].filter((k) => targets.has(k));
    const all = measured.length === ALL_TARGETS.length;
    for (const c of concurrencies)
      for (let r = 1; r <= rounds; r++)
        for (const key of measured) {
          const url = urls.get(key)!;
          const h = headers.get(key);
          const ps = procsOf.get(key) ?? [];
          let cpu0: (number | undefined)[] = [];
          let cpu: (number | undefined)[] = [];
          const res = await runLoad({
            url,
            concurrency: c,
            durationMs,
            warmupMs,
            ...(h && { headers: h }),
            onMeasureStart: () => (cpu0 = ps.map((p) => cpuMs(p.pid))),
            onMeasureEnd: () =>
              (cpu = ps.map((p, i) => {
                const now = cpuMs(p.pid);
                return now !== undefined && cpu0[i] !== undefined ? now - cpu0[i]! : undefined;
              })),
          });
          const perReq = cpu.map((x) => (x !== undefined && res.requests > 0 ? x / res.requests : undefined));
          results.push({ key, c, p50: res.p50, p99: res.p99, rps: res.rps, errors: res.errors, cpu: perReq });
          log(
            `  ${key.padEnd(9)} c=${c} round ${r}: p50 ${res.p50.toFixed(3)} ms  ${res.rps.toFixed(0)} req/s${res.errors ? `  ERRORS ${res.errors} ${res.errorSamples.join(' | ')}` : ''}`,
          );
        }
    const lines = [
      '| target | concurrency | p50 ms | p99 ms | req/s | CPU ms/req (tiers: edge + core; hop-core: hop + core) |',
      '| --- | --- | --- | --- | --- | --- |',
    ];
    const m = (key: Key, c: number, f: 'p50' | 'p99' | 'rps') =>
      median(results.filter((x) => x.key === key && x.c === c).map((x) => x[f]));
    const cpuOf = (key: Key, c: number) =>
      (procsOf.get(key) ?? []).map((_, i) => {
        const xs = results
          .filter((x) => x.key === key && x.c === c)
          .map((x) => x.cpu[i])
          .filter((x): x is number => x !== undefined);
        return xs.length ? median(xs).toFixed(3) : 'n/a';
      });
    for (const c of concurrencies)
      for (const key of measured)
        lines.push(
          `| ${key} | ${c} | ${m(key, c, 'p50').toFixed(3)} | ${m(key, c, 'p99').toFixed(3)} | ${m(key, c, 'rps').toFixed(0)} | ${cpuOf(key, c).join(' + ') || '-'} |`,
        );
    lines.push('');
    for (const c of all ? concurrencies : [])
      lines.push(
        `- c=${c}: the edge hop (JWT on) adds ${(m('tiers', c, 'p50') - m('core', c, 'p50')).toFixed(3)} ms p50 ` +
          `and keeps ${((100 * m('tiers', c, 'rps')) / m('core', c, 'rps')).toFixed(0)}% of the throughput ` +
          `(a bare hop in front of the core, the floor: +${(m('hop-core', c, 'p50') - m('core', c, 'p50')).toFixed(3)} ms, ` +
          `${((100 * m('hop-core', c, 'rps')) / m('core', c, 'rps')).toFixed(0)}%; ` +
          `in front of the backend: +${(m('bare-hop', c, 'p50') - m('direct', c, 'p50')).toFixed(3)} ms, ` +
          `${((100 * m('bare-hop', c, 'rps')) / m('direct', c, 'rps')).toFixed(0)}%)`,
      );
    const text = `# edge -> core hop (${new Date().toISOString()}, ${os.cpus().length} CPUs)\n\n${lines.join('\n')}\n`;
    process.stdout.write(text);
    mkdirSync(opt.out, { recursive: true });
    writeFileSync(join(opt.out, 'tiers-latest.md'), text);
    if (opt.json) {
      const r3 = (x: number) => Math.round(x * 1000) / 1000;
      const summary = concurrencies.flatMap((c) =>
        measured.map((target) => ({
          target,
          concurrency: c,
          p50: r3(m(target, c, 'p50')),
          p99: r3(m(target, c, 'p99')),
          rps: Math.round(m(target, c, 'rps')),
        })),
      );
      const ratios = (all ? concurrencies : []).map((c) => ({
        concurrency: c,
        bareHopP50AddedMs: r3(m('bare-hop', c, 'p50') - m('direct', c, 'p50')),
        singleP50AddedMs: r3(m('core', c, 'p50') - m('direct', c, 'p50')),
        tiersP50AddedMs: r3(m('tiers', c, 'p50') - m('direct', c, 'p50')),
        edgeHopP50Ms: r3(m('tiers', c, 'p50') - m('core', c, 'p50')),
        singleOverDirectRps: r3(m('core', c, 'rps') / m('direct', c, 'rps')),
        tiersOverDirectRps: r3(m('tiers', c, 'rps') / m('direct', c, 'rps')),
        tiersOverSingleRps: r3(m('tiers', c, 'rps') / m('core', c, 'rps')),
        hopCoreP50AddedMs: r3(m('hop-core', c, 'p50') - m('core', c, 'p50')),
        hopCoreOverSingleRps: r3(m('hop-core', c, 'rps') / m('core', c, 'rps')),
      }));
      const errors = results.reduce((a, x) => a + x.errors, 0);
      const params = { durationMs, warmupMs, rounds, concurrencies };
      writeFileSync(
        opt.json,
        `${JSON.stringify({ parameters: params, summary, ratios, errors }, null, 2)}\n`,
      );
    }
    return results.some((x) => x.errors > 0) ? 1 : 0;
  } finally {
    await stopAll();
    for (const close of closers) close();
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
