/**
 * A multi-region NATS topology of local nats-server processes, as docs/federation.md describes it: each
 * region a standalone server with its own JetStream domain (named after the region), the first region
 * the leaf-node hub that every other region connects to. Each region's server can be killed and
 * restarted (same ports, same store); close() kills every process and removes the store directories.
 * Used by `npm run cluster` (deploy/local/cluster.ts) and by the tests (test/helpers/nats-cluster.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface NatsRegionServer {
  readonly region: string;
  /** nats://127.0.0.1:port */
  readonly url: string;
  readonly running: boolean;
  /** SIGKILL: the region is lost at once, as in a crash. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and store; resolves once its leaf links are up. */
  restart(): Promise<void>;
}

export interface NatsTopology {
  readonly regions: readonly string[];
  server(region: string): NatsRegionServer;
  /** The processes running now (their ids), for whoever checks that none outlives close(). */
  pids(): number[];
  close(): Promise<void>;
}

export interface NatsTopologyOptions {
  /** Client port per region (default: a free port each). */
  ports?: Readonly<Record<string, number>>;
  /** The hub's leaf-node port (default: a free port). */
  leafPort?: number;
  /**
   * Per spoke, the port it dials for its leaf link instead of the hub's (a proxy in front of the hub's
   * leaf port that a test can cut: a partition with both sides alive).
   */
  leafVia?: Readonly<Record<string, number>>;
  /**
   * The leaf-node address the hub tells its spokes (they dial it when a link drops): with `leafVia`,
   * the proxy's port, or a spoke would come back around the cut link. Default: the hub's own.
   */
  leafAdvertise?: number;
}

export async function startNatsTopology(
  regions: readonly string[] = ['a', 'b'],
  options: NatsTopologyOptions = {},
): Promise<NatsTopology> {
  const [hub, ...spokes] = regions;
  if (!hub) throw new Error('a topology needs at least one region');
  const root = await mkdtemp(join(tmpdir(), 'mcpgw-nats-'));
  const leafPort = options.leafPort ?? (await freePort());
  const servers = new Map<string, RegionProcess>();
  try {
    for (const region of regions) {
      const port = options.ports?.[region] ?? (await freePort());
      const dir = join(root, region);
      const conf = join(root, `${region}.conf`);
      await writeFile(
        conf,
        natsConfig({
          region,
          port,
          storeDir: dir,
          leaf:
            region === hub
              ? {
                  listen: leafPort,
                  ...(options.leafAdvertise !== undefined && { advertise: options.leafAdvertise }),
                }
              : { hub: options.leafVia?.[region] ?? leafPort },
        }),
      );
      // The hub sees one leaf link per spoke; a spoke sees its one link to the hub.
      const links = region === hub ? spokes.length : 1;
      servers.set(region, new RegionProcess(region, port, conf, links));
    }
    // The hub first, so that the spokes' first leaf attempt finds it.
    await servers.get(hub)!.start(0);
    await Promise.all(spokes.map((r) => servers.get(r)!.start()));
    await servers.get(hub)!.leafLinks(spokes.length);
  } catch (err) {
    await Promise.all([...servers.values()].map((s) => s.kill()));
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return {
    regions,
    server(region) {
      const s = servers.get(region);
      if (!s) throw new Error(`no region "${region}" in this topology`);
      return s;
    },
    pids: () => [...servers.values()].flatMap((s) => (s.pid === undefined ? [] : [s.pid])),
    async close() {
      await Promise.all([...servers.values()].map((s) => s.kill()));
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** One region's server config: the same shape as deploy/local/nats-*.conf. */
export function natsConfig(o: {
  region: string;
  port: number;
  storeDir: string;
  leaf: { listen: number; advertise?: number } | { hub: number };
}): string {
  const leaf =
    'listen' in o.leaf
      ? `leafnodes { listen: 127.0.0.1:${o.leaf.listen}${o.leaf.advertise !== undefined ? `, advertise: "127.0.0.1:${o.leaf.advertise}"` : ''} }`
      : `leafnodes { reconnect: 1, remotes: [ { url: "nats-leaf://127.0.0.1:${o.leaf.hub}" } ] }`;
  return [
    `server_name: ${o.region}`,
    `listen: 127.0.0.1:${o.port}`,
    `jetstream { domain: ${o.region}, store_dir: ${JSON.stringify(o.storeDir)} }`,
    leaf,
    '',
  ].join('\n');
}

class RegionProcess implements NatsRegionServer {
  readonly url: string;
  private child: ChildProcess | undefined;
  private output = '';
  private waiters: Array<() => void> = [];

  constructor(
    readonly region: string,
    port: number,
    private readonly conf: string,
    private readonly links: number,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(links = this.links): Promise<void> {
    this.output = '';
    const child = spawn('nats-server', ['-c', this.conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.once('error', (err) => {
      // Not started (nats-server not on PATH...): not running, so every wait fails at once.
      if (this.child === child) this.child = undefined;
      this.output += `\n${err.message}`;
      for (const w of this.waiters.splice(0)) w();
    });
    const onData = (b: Buffer) => {
      this.output += b.toString();
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', () => {
      for (const w of this.waiters.splice(0)) w();
    });
    await this.until(() => /Server is ready/.test(this.output), 'Server is ready');
    await this.leafLinks(links);
  }

  /** Resolves once this server logged `n` leaf connections since it started. */
  leafLinks(n: number): Promise<void> {
    return this.until(
      () => (this.output.match(/Leafnode connection created/g) ?? []).length >= n,
      `${n} leaf link(s)`,
    );
  }

  restart(): Promise<void> {
    if (this.running) throw new Error(`region ${this.region}'s server is running`);
    return this.start();
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  private until(done: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`nats-server ${this.region}: no ${what} after ${timeoutMs} ms:\n${this.output}`)),
        timeoutMs,
      );
      const check = () => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else if (!this.running) {
          clearTimeout(timer);
          reject(new Error(`nats-server ${this.region} exited before ${what}:\n${this.output}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }
}

/** A free TCP port on loopback (the kernel's choice). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
