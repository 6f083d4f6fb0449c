/**
 * `node dist/bench/registry.js`: how soon a registry change reaches a connected client (issue 7's target:
 * `notifications/tools/list_changed` within 100 ms). A gateway (role single) on the shared Postgres
 * registry (its own schema), an official SDK client on its `/mcp` with the GET stream open; this process
 * changes the registry as another gateway or the admin API would (a server added, then removed, on the
 * same Postgres) and times each change from the write until the client hears list_changed, then checks
 * that tools/list shows the change.
 *
 * Postgres is MCPGW_BENCH_PG_URL (default postgres://root@127.0.0.1:5432/test); the schema is dropped
 * afterwards.
 *
 *   node dist/bench/registry.js [--changes 20] [--json FILE]
 */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../shared/adapters/postgres/migrations.js';
import { PgDatabase } from '../shared/adapters/postgres/pg-database.js';
import { PostgresRegistryStore } from '../shared/adapters/postgres/registry-store.js';
import { runtimeServerSchema } from '../shared/config/schema.js';
import { connectSdk } from '../test/helpers/sdk-clients.js';
import { freePort, spawnChild, stopAll, waitForHttp, waitForListening } from './procs.js';

const here = dirname(fileURLToPath(import.meta.url)); // <root>/dist/bench
const root = resolve(here, '../..');
const node = process.execPath;

const { values: opt } = parseArgs({
  options: {
    changes: { type: 'string', default: '20' },
    'pg-url': {
      type: 'string',
      default: process.env.MCPGW_BENCH_PG_URL ?? 'postgres://root@127.0.0.1:5432/test',
    },
    json: { type: 'string' },
  },
});
const changes = Number(opt.changes);
if (!Number.isInteger(changes) || changes < 1) {
  process.stderr.write('--changes must be a positive integer\n');
  process.exit(2);
}
const pgUrl = opt['pg-url']!;
const schema = `mcpgw_bench_${randomBytes(5).toString('hex')}`;
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function stats(xs: number[]): { p50: number; p99: number; max: number; n: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  return { p50: r3(q(0.5)), p99: r3(q(0.99)), max: r3(s.at(-1)!), n: s.length };
}

async function dropSchema(): Promise<void> {
  const c = new pg.Client({ connectionString: pgUrl });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(os.tmpdir(), 'mcpgw-bench-registry-'));
  let admin: PostgresRegistryStore | undefined;
  try {
    const backend = spawnChild('fast-http', node, [join(here, 'backends', 'fast-http.js'), '--port', '0']);
    const backendUrl = await waitForListening(backend);
    const port = await freePort();
    const file = join(dir, 'mcpgw.json');
    writeFileSync(
      file,
      JSON.stringify({
        role: 'single',
        listen: { host: '127.0.0.1', port },
        auth: { mode: 'none' },
        log: { level: 'warn' },
        store: { kind: 'postgres', url: pgUrl, schema },
        servers: [{ name: 'base', transport: 'streamable-http', url: backendUrl }],
      }),
    );
    const gw = spawnChild(
      'mcpgw',
      node,
      [join(root, 'dist', 'cli', 'main.js'), 'start', '--config', file],
      root,
    );
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(gw, `${base}/readyz`, (s) => s === 200, 60_000);
    const db = new PgDatabase({ url: pgUrl, schema, poolSize: 2 });
    await migrate(db);
    admin = await PostgresRegistryStore.open(db, { ownsDb: true });
    log(`mcpgw ${base} on Postgres schema ${schema}`);

    const client = await connectSdk('v2', `${base}/mcp`);
    let heard: (() => void) | undefined;
    client.onNotification('notifications/tools/list_changed', () => heard?.());
    const names = async () => ((await client.listTools()).tools as { name: string }[]).map((t) => t.name);
    if (!(await names()).includes('base__echo')) throw new Error('base__echo missing from /mcp');

    const timeChange = async (write: () => Promise<unknown>, what: string): Promise<number> => {
      const notified = new Promise<number>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no list_changed within 10 s of ${what}`)), 10_000);
        heard = () => {
          clearTimeout(timer);
          res(performance.now());
        };
      });
      const t0 = performance.now();
      await write();
      return (await notified) - t0;
    };
    const added: number[] = [];
    const removed: number[] = [];
    for (let i = 0; i < changes + 2; i++) {
      const name = `extra${i}`;
      const server = runtimeServerSchema.parse({ name, transport: 'streamable-http', url: backendUrl });
      const a = await timeChange(() => admin!.upsert(server, 'bench'), `adding ${name}`);
      if (!(await names()).includes(`${name}__echo`))
        throw new Error(`${name}__echo not listed after list_changed`);
      const d = await timeChange(() => admin!.delete(name, 'bench'), `deleting ${name}`);
      if ((await names()).includes(`${name}__echo`))
        throw new Error(`${name}__echo still listed after its delete`);
      if (i < 2) continue; // warm-up
      added.push(a);
      removed.push(d);
    }
    await client.close();
    const out = { changes, added: stats(added), removed: stats(removed), targetMs: 100 };
    process.stdout.write(
      [
        '| registry change -> list_changed on a client of /mcp | p50 ms | p99 ms | max ms | changes |',
        '| --- | --: | --: | --: | --: |',
        `| server added (Postgres, another writer) | ${out.added.p50} | ${out.added.p99} | ${out.added.max} | ${out.added.n} |`,
        `| server removed | ${out.removed.p50} | ${out.removed.p99} | ${out.removed.max} | ${out.removed.n} |`,
        '',
      ].join('\n'),
    );
    if (opt.json) writeFileSync(opt.json, `${JSON.stringify(out, null, 2)}\n`);
    return 0;
  } finally {
    await admin?.close();
    await stopAll();
    await dropSchema().catch((err: unknown) => log(`could not drop schema ${schema}: ${String(err)}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(`registry bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    void stopAll().finally(() => process.exit(1));
  },
);
