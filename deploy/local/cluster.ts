/**
 * `npm run cluster`: a two-region federation on this machine (docs/federation.md, "Local cluster").
 * Per region: its own nats-server (JetStream domain named after the region, joined by leaf nodes as
 * deploy/local/nats-topology.ts builds them), a core with demo backends and an edge; both regions share
 * Redis (sessions under one key prefix, so a DR partner continues a region's sessions) and Postgres (one
 * schema per region). Region a serves `notes`, region b `notes` and `everything`; `drPartners` pairs
 * a <-> b. Prints the endpoints; Ctrl-C (SIGINT) or SIGTERM stops every process and removes the files.
 *
 *   npm run cluster -- [--base-port 7400 | 0] [--redis URL] [--postgres URL | none] [--verbose]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import { registryBucket } from '../../federation/subjects.js';
import { freePort, startNatsTopology, type NatsTopology } from './nats-topology.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = join(ROOT, 'dist/cli/main.js');
const REGIONS = ['a', 'b'] as const;
type Region = (typeof REGIONS)[number];

interface Options {
  basePort: number;
  redis: string;
  postgres: string | undefined;
  verbose: boolean;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'base-port': { type: 'string', default: process.env.MCPGW_CLUSTER_BASE_PORT ?? '7400' },
      redis: { type: 'string', default: process.env.MCPGW_CLUSTER_REDIS ?? 'redis://127.0.0.1:6379' },
      postgres: {
        type: 'string',
        // As psql does: the OS user, database "postgres".
        default:
          process.env.MCPGW_CLUSTER_POSTGRES ??
          `postgres://${encodeURIComponent(process.env.PGUSER ?? userInfo().username)}@127.0.0.1:5432/postgres`,
      },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run cluster -- [--base-port N (0: free ports)] [--redis URL] [--postgres URL|none] [--verbose]\n',
    );
    process.exit(0);
  }
  const basePort = Number(values['base-port']);
  if (!Number.isInteger(basePort) || basePort < 0 || basePort > 65_000)
    throw new Error(`--base-port: "${values['base-port']}" is not a port number (0 picks free ports)`);
  if (!/^rediss?:\/\//.test(values.redis))
    throw new Error(`--redis: "${values.redis}" is not a redis:// URL`);
  const pg = values.postgres === 'none' ? undefined : values.postgres;
  if (pg !== undefined && !/^postgres(ql)?:\/\//.test(pg))
    throw new Error(`--postgres: "${pg}" is not a postgres:// URL (or "none")`);
  return { basePort, redis: values.redis, postgres: pg, verbose: values.verbose };
}

/** Ports per region: fixed from the base (a: base+1.., b: base+21..) or free ones. */
async function ports(base: number) {
  const pick = async (offset: number) => (base === 0 ? freePort() : base + offset);
  const out = {} as Record<Region, { nats: number; core: number; edge: number }>;
  for (const [i, r] of REGIONS.entries())
    out[r] = { nats: await pick(20 * i + 1), core: await pick(20 * i + 11), edge: await pick(20 * i + 10) };
  return { regions: out, leaf: await pick(2) };
}

function natsOnPath(): boolean {
  const r = spawnSync('nats-server', ['--version'], { stdio: 'ignore' });
  return !r.error;
}

class Cluster {
  private readonly children: Array<{ name: string; child: ChildProcess }> = [];
  private nats: NatsTopology | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly dir: string,
    private readonly verbose: boolean,
  ) {}

  /** Starts a gateway; resolves once it logs that it listens, rejects if it exits before. */
  gateway(name: string, config: object): Promise<void> {
    const file = join(this.dir, `${name.replace('/', '-')}.json`);
    writeFileSync(file, JSON.stringify(config, null, 2));
    const child = spawn(process.execPath, [MAIN, 'start', '--config', file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push({ name, child });
    return new Promise((resolve, reject) => {
      let partial = '';
      let ready = false;
      const timer = setTimeout(() => reject(new Error(`${name}: not listening after 60 s`)), 60_000);
      const onData = (b: Buffer) => {
        const lines = (partial + b.toString()).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          if (!ready && line.includes('mcpgw listening')) {
            ready = true;
            clearTimeout(timer);
            resolve();
          }
          if (this.verbose || levelOf(line) >= 40) process.stdout.write(`[${name}] ${line}\n`);
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!ready) reject(new Error(`${name} exited (${signal ?? code}) before it was listening`));
        else if (!this.stopping) process.stdout.write(`[${name}] exited (${signal ?? code})\n`);
      });
    });
  }

  async startNats(p: Awaited<ReturnType<typeof ports>>): Promise<NatsTopology> {
    this.nats = await startNatsTopology(REGIONS, {
      ports: { a: p.regions.a.nats, b: p.regions.b.nats },
      leafPort: p.leaf,
    });
    return this.nats;
  }

  pids(): number[] {
    return [
      ...this.children.flatMap(({ child }) => (child.pid === undefined ? [] : [child.pid])),
      ...(this.nats?.pids() ?? []),
    ];
  }

  /** Edges first (clients go away), then cores (they let go of their sessions), then NATS. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const byRole = (role: string) => this.children.filter((c) => c.name.endsWith(role));
      await Promise.all(byRole('edge').map((c) => stopChild(c.child)));
      await Promise.all(byRole('core').map((c) => stopChild(c.child)));
      await this.nats?.close();
      rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }
}

function levelOf(line: string): number {
  const m = /^\{"level":(\d+)/.exec(line);
  return m ? Number(m[1]) : 50;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(t);
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  if (!natsOnPath()) {
    process.stderr.write(
      'npm run cluster needs nats-server (2.9 or later) on PATH: install it (https://docs.nats.io/running-a-nats-service/introduction/installation, e.g. `apt-get install nats-server`) and run again.\n',
    );
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cluster-'));
  const cluster = new Cluster(dir, o.verbose);
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) return; // a second Ctrl-C while stopping: the stop is already under way
    process.stdout.write('\nstopping the cluster...\n');
    void cluster.stop().then(() => {
      process.stdout.write('cluster stopped\n');
      process.exit(0);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const p = await ports(o.basePort);
    const nats = await cluster.startNats(p);
    // Every region's registry bucket exists before any gateway mirrors it: a 2.9 mirror created before
    // its origin was seen to stay empty until it is rebuilt.
    for (const r of REGIONS) {
      const bus = await NatsBus.connect({ servers: nats.server(r).url, name: 'mcpgw-cluster-setup' });
      await bus.bucket(registryBucket(r)).finally(() => bus.close());
    }
    // One signing key for the edges of both regions, trusted by every core (internal tokens).
    const keys = generateKeyPairSync('ed25519');
    const priv = join(dir, 'edge-signing.key.pem');
    const pub = join(dir, 'edge-signing.pub.pem');
    writeFileSync(priv, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(pub, keys.publicKey.export({ type: 'spki', format: 'pem' }));
    // Marks every backend process, so that one outliving the cluster can be found.
    const run = randomBytes(6).toString('hex');
    const node = (args: string[]) => ({
      transport: 'stdio',
      command: process.execPath,
      args,
      env: { MCPGW_CLUSTER_RUN: run },
    });
    const notes = { name: 'notes', ...node([join(ROOT, 'dist/demo/backends/notes.js')]) };
    const everything = {
      name: 'everything',
      description: 'The MCP reference server, served only in region b',
      ...node([join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'stdio']),
    };
    const servers: Record<Region, object[]> = { a: [notes], b: [notes, everything] };
    const common = (region: Region, gatewayId: string) => ({
      region,
      log: { level: 'info' },
      sessions: { store: 'redis' },
      redis: { url: o.redis, keyPrefix: 'mcpgw-cluster' },
      federation: {
        bus: 'nats',
        natsUrls: [nats.server(region).url],
        regions: [...REGIONS],
        gatewayId,
        drPartners: { a: 'b', b: 'a' },
      },
    });
    await Promise.all(
      REGIONS.map((r) =>
        cluster.gateway(`${r}/core`, {
          ...common(r, `core-${r}`),
          role: 'core',
          listen: { host: '127.0.0.1', port: p.regions[r].core },
          internal: { id: `core-${r}`, trustedKeys: [pub] },
          store: o.postgres
            ? { kind: 'postgres', url: o.postgres, schema: `mcpgw_cluster_${r}` }
            : { kind: 'memory' },
          servers: servers[r],
        }),
      ),
    );
    await Promise.all(
      REGIONS.map((r) =>
        cluster.gateway(`${r}/edge`, {
          ...common(r, `edge-${r}`),
          role: 'edge',
          listen: { host: '127.0.0.1', port: p.regions[r].edge },
          auth: { mode: 'none' },
          internal: { id: `edge-${r}`, signingKey: priv },
          store: { kind: 'memory' },
        }),
      ),
    );
    const lines = [
      '',
      'mcpgw cluster: two regions on this machine (DR partners a <-> b)',
      ...REGIONS.map((r) =>
        [
          `  region ${r}: edge  http://127.0.0.1:${p.regions[r].edge}/mcp  (one server: /servers/<name>/mcp; serves ${servers[r].map((s) => (s as { name: string }).name).join(', ')})`,
          `            core  http://127.0.0.1:${p.regions[r].core}  (internal API, edges only)`,
          `            nats  ${nats.server(r).url}  (JetStream domain ${r})`,
        ].join('\n'),
      ),
      `  shared: redis ${o.redis} (prefix mcpgw-cluster), postgres ${o.postgres ?? 'none (memory stores)'}${o.postgres ? ' (schemas mcpgw_cluster_a, mcpgw_cluster_b)' : ''}`,
      `  try: a client at http://127.0.0.1:${p.regions.a.edge}/servers/everything/mcp is served by region b`,
      `  pids: ${cluster.pids().join(' ')}`,
      `  backends marked MCPGW_CLUSTER_RUN=${run}`,
      'cluster ready; Ctrl-C stops everything',
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } catch (err) {
    process.stderr.write(`cluster: ${(err as Error).message}\n`);
    await cluster.stop();
    process.exit(1);
  }
}

await main();
