/**
 * A real Redis Cluster of three masters for tests: three `redis-server --cluster-enabled yes` on free
 * ports (client and bus port both chosen free, so nothing collides with another test's servers), joined
 * with `redis-cli --cluster create`, in a temporary directory that `stop()` removes with the processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, spawnUntil, stopChild } from './net.js';

export interface RedisClusterHandle {
  /** `{ host, port }` of every master, for `new Cluster(nodes)`. */
  readonly nodes: { host: string; port: number }[];
  /** `redis://127.0.0.1:<port>` of every master. */
  readonly urls: string[];
  stop(): Promise<void>;
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${out}`)),
    );
  });
}

export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'mcpgw-redis-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const bus = await freePort();
      ports.push(port);
      children.push(
        await spawnUntil(
          'redis-server',
          [
            '--port',
            String(port),
            '--cluster-port',
            String(bus),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--dir',
            dir,
            '--save',
            '',
            '--appendonly',
            'no',
          ],
          /Ready to accept connections/,
        ),
      );
    }
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    // `create` returns once the slots are assigned; every node must also agree before clients use it.
    const deadline = Date.now() + 20_000;
    for (const port of ports) {
      const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      try {
        for (;;) {
          const info = String(await r.call('CLUSTER', 'INFO'));
          if (/cluster_state:ok/.test(info) && new RegExp(`cluster_known_nodes:${masters}`).test(info)) break;
          if (Date.now() > deadline) throw new Error(`cluster node ${port} not ready: ${info}`);
          await new Promise((res) => setTimeout(res, 100));
        }
      } finally {
        r.disconnect();
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    urls: ports.map((p) => `redis://127.0.0.1:${p}`),
    stop,
  };
}
