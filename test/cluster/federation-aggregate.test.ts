/**
 * The aggregate `/mcp` across the federation, separate processes over the test's own two-region NATS
 * topology: region a's edge lists the tools only region b's core serves and those of a domain team's
 * core (`federation.domain: finance`), with the official SDK client, and its calls reach the serving
 * core (audited on the edge and on that core); a tenant confined to region a neither sees nor can call
 * b's tools, and the edge's deny policy hides a domain tool; an edge of region b serves the domain too
 * (on /mcp and /servers/finance/mcp); a core joining region b makes every open aggregate session at a's
 * edge get tools/list_changed (time measured from the registry write in b's bucket); a domain named
 * like a region's server is refused at start.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import type { AuditRecord } from '../../shared/ports/audit-sink.js';
import { mcpgw } from '../helpers/cli.js';
import { eventually as retry } from '../helpers/federation.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { collectOutput, type Output } from '../helpers/output.js';
import { makeSigningKey } from '../helpers/pki.js';
import { dropSchema, PG_URL, uniqueSchema } from '../helpers/postgres.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const fast = { heartbeatMs: 500, downAfterMs: 2000, antiEntropyMs: 2000 };
const stdio = (name: string, tools: string[], extra: Record<string, unknown> = {}) => ({
  name,
  transport: 'stdio',
  command: process.execPath,
  args: [SCRIPTED],
  env: { FIXTURE_CATALOG: JSON.stringify({ tools }) },
  ...extra,
});

interface Proc {
  child: ChildProcess;
  out: Output;
  url: string;
  file: string;
}

const names = (r: { tools: Array<{ name: string }> }) => r.tools.map((t) => t.name).sort();
const text = (r: { content?: unknown }) => JSON.stringify(r.content);

describe('the aggregate /mcp across regions and domains', { timeout: 180_000 }, () => {
  const prefix = `mcpgw-test-fedagg-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-fedagg-'));
  const schemas = { edge: uniqueSchema('fedaggedge'), core: uniqueSchema('fedaggcore') };
  const children: ChildProcess[] = [];
  const clients: SdkClient[] = [];
  let topo: NatsTopology;
  let key: { priv: string; pub: string };
  let coreB: Proc;
  let edgeA: Proc;
  let edgeR: Proc;
  let edgeB: Proc;
  let single: Proc;

  async function spawnNode(name: string, doc: { listen: { port: number } }): Promise<Proc> {
    const file = join(dir, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        store: { kind: 'memory' },
        log: { level: process.env.FED_DEBUG ? 'debug' : 'info' },
        sessions: { store: 'redis' },
        redis: { url: REDIS_URL, keyPrefix: prefix },
        ...doc,
      }),
    );
    const t0 = Date.now();
    const child = await spawnUntil(
      process.execPath,
      [MAIN, 'start', '--config', file],
      /mcpgw listening/,
      {},
      60_000,
    );
    console.log(`# ${name} listening after ${Date.now() - t0} ms`);
    children.push(child);
    if (process.env.FED_DEBUG)
      child.stdout!.on('data', (b: Buffer) => process.stderr.write(`[${name}] ${b}`));
    return { child, out: collectOutput(child), url: `http://127.0.0.1:${doc.listen.port}`, file };
  }

  const federation = (region: string, extra: Record<string, unknown> = {}) => ({
    bus: 'nats',
    natsUrls: [topo.server(region).url],
    regions: ['a', 'b'],
    ...fast,
    ...extra,
  });

  const audited = (schema: string) => ({
    store: { kind: 'postgres', url: PG_URL, schema },
    audit: { enabled: true, flushMs: 20 },
  });

  function coreDoc(id: string, region: string, servers: object[], port: number, extra: object = {}) {
    return {
      role: 'core',
      region,
      listen: { host: '127.0.0.1', port },
      internal: { id, trustedKeys: [key.pub] },
      servers,
      ...extra,
      federation: federation(region, {
        gatewayId: id,
        ...((extra as { federation?: object }).federation ?? {}),
      }),
    };
  }

  async function core(id: string, region: string, servers: object[], extra: object = {}): Promise<Proc> {
    return spawnNode(id, coreDoc(id, region, servers, await freePort(), extra) as never);
  }

  async function edge(name: string, region: string, extra: Record<string, unknown> = {}): Promise<Proc> {
    const port = await freePort();
    const { tenants, ...rest } = extra;
    return spawnNode(name, {
      role: 'edge',
      region,
      listen: { host: '127.0.0.1', port },
      internal: { id: name, signingKey: key.priv },
      ...rest,
      federation: federation(region, { gatewayId: name, ...(tenants ? { tenants } : {}) }),
    } as never);
  }

  async function client(p: Proc, path = '/mcp'): Promise<SdkClient> {
    const c = await connectSdk('v2', `${p.url}${path}`);
    clients.push(c);
    return c;
  }

  /** Retries `fn` until it stops throwing (edges learn cores and catalogs within a few heartbeats). */
  const eventually = <T>(fn: () => Promise<T>, ms = 45_000) => retry(fn, ms, 250);

  /** The aggregate's tool names once they include every one of `want`. */
  async function listing(c: SdkClient, want: string[]): Promise<string[]> {
    return eventually(async () => {
      const got = names(await c.listTools());
      for (const w of want) if (!got.includes(w)) throw new Error(`${w} not listed yet: ${got.join(', ')}`);
      return got;
    });
  }

  async function exported(file: string, region: string): Promise<AuditRecord[]> {
    const r = await mcpgw(['audit', 'export', '--config', file, '--region', region]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditRecord);
  }

  before(async () => {
    topo = await startNatsTopology(['a', 'b']);
    key = makeSigningKey(dir, 'edge-signing');
    [, coreB] = await Promise.all([
      core('core-a', 'a', [stdio('weather', ['forecast'])]),
      core('core-b', 'b', [stdio('maps', ['route'])], audited(schemas.core)),
      // A domain team's core, hosted in region a, joining under its namespace.
      core('core-fin', 'a', [stdio('ledger', ['post', 'balance'])], { federation: { domain: 'finance' } }),
    ]);
    [edgeA, edgeR, edgeB, single] = await Promise.all([
      edge('edge-a', 'a', audited(schemas.edge)),
      // The anonymous caller's tenant may keep its data in region a only; this edge's policy hides a
      // domain tool from everyone.
      edge('edge-r', 'a', {
        tenants: { default: { allowedRegions: ['a'] } },
        policy: {
          default: 'allow',
          rules: [{ effect: 'deny', servers: ['finance'], tools: ['ledger__post'] }],
        },
      }),
      edge('edge-b', 'b'),
      // A single-role gateway of region a with its own server, reaching other cores as an edge does.
      (async () => {
        const port = await freePort();
        return spawnNode('single-a', {
          role: 'single',
          region: 'a',
          listen: { host: '127.0.0.1', port },
          internal: { id: 'single-a', signingKey: key.priv },
          servers: [stdio('notes', ['jot'])],
          federation: federation('a', { gatewayId: 'single-a' }),
        } as never);
      })(),
    ]);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(children.map((c) => stopChild(c)));
    await topo?.close();
    await Promise.all(Object.values(schemas).map((s) => dropSchema(s).catch(() => {})));
    if (!process.env.FED_DEBUG) rmSync(dir, { recursive: true, force: true });
  });

  test("a's /mcp lists b's tools and the domain's, and a call of b's tool is served by b's backend", async () => {
    const c = await client(edgeA);
    const tools = await listing(c, ['weather__forecast', 'maps__route', 'finance__ledger__post']);
    assert.ok(tools.includes('finance__ledger__balance'), tools.join(', '));
    // Each name once: the merge never repeats a server.
    assert.equal(new Set(tools).size, tools.length);
    const args = { to: 'Bergen', marker: randomBytes(4).toString('hex') };
    const r = await c.callTool({ name: 'maps__route', arguments: args });
    assert.equal(r.isError, undefined);
    assert.deepEqual(JSON.parse((r.content as Array<{ text: string }>)[0]!.text), {
      tool: 'route',
      arguments: args,
    });
    // The same process b's core runs for `maps` (its pid, seen through /servers/maps/mcp).
    const direct = await client(edgeA, '/servers/maps/mcp');
    const pidDirect = text(await direct.callTool({ name: 'pid', arguments: {} }));
    const pidMerged = text(await c.callTool({ name: 'maps__pid', arguments: {} }));
    assert.equal(pidMerged, pidDirect);
    // The local server still answers from a's core.
    assert.match(text(await c.callTool({ name: 'weather__forecast', arguments: {} })), /forecast/);
    // Audited on a's edge (forwarded to b's core) and on b's core (the backend it ran on).
    const find = (rs: AuditRecord[]) => rs.find((x) => x.method === 'tools/call' && x.target === 'route');
    const [e, k] = await eventually(async () => {
      const both = [find(await exported(edgeA.file, 'a')), find(await exported(coreB.file, 'b'))];
      if (!both[0] || !both[1]) throw new Error('not audited yet');
      return both as [AuditRecord, AuditRecord];
    }, 20_000);
    assert.equal(e.server, 'core:core-b@b');
    assert.equal(k.server, 'maps');
    assert.equal(e.argsHash, k.argsHash);
    assert.equal(e.outcome, 'ok');
    assert.equal(k.outcome, 'ok');
  });

  test("a tenant allowed only region a does not see b's tools and is refused their call, by name", async () => {
    const c = await client(edgeR);
    const tools = await listing(c, ['weather__forecast', 'finance__ledger__balance']);
    assert.ok(!tools.some((t) => t.startsWith('maps__')), tools.join(', '));
    const err = await c.callTool({ name: 'maps__route', arguments: {} }).then(
      (r: unknown) => assert.fail(`called: ${JSON.stringify(r)}`),
      (e: unknown) => e as Error,
    );
    assert.match(String(err), /residency/i);
    assert.match(String(err), /"maps" is served in b/);
    const line = await edgeR.out.waitFor(/call refused by data residency/, 0, 5_000);
    assert.match(line, /"tenant":"default"/);
  });

  test("the edge's deny policy hides a domain tool: not listed, and its call is an unknown tool", async () => {
    const c = await client(edgeR);
    const tools = await listing(c, ['finance__ledger__balance']);
    assert.ok(!tools.includes('finance__ledger__post'), tools.join(', '));
    await assert.rejects(
      () => c.callTool({ name: 'finance__ledger__post', arguments: {} }),
      /Unknown tool: finance__ledger__post/,
    );
    assert.match(text(await c.callTool({ name: 'finance__ledger__balance', arguments: {} })), /balance/);
  });

  test("the domain appears at region b's edge too: on /mcp and as /servers/finance/mcp", async () => {
    const c = await client(edgeB);
    await listing(c, ['maps__route', 'weather__forecast', 'finance__ledger__post']);
    const r = await c.callTool({ name: 'finance__ledger__post', arguments: { amount: 5 } });
    assert.deepEqual(JSON.parse((r.content as Array<{ text: string }>)[0]!.text), {
      tool: 'post',
      arguments: { amount: 5 },
    });
    const d = await eventually(() => client(edgeB, '/servers/finance/mcp'));
    const own = names(await d.listTools());
    assert.ok(own.includes('ledger__post') && own.includes('ledger__balance'), own.join(', '));
    assert.match(text(await d.callTool({ name: 'ledger__balance', arguments: {} })), /balance/);
  });

  test("a core joining region b: list_changed at a's open /mcp sessions, then its tools are listed and callable", async () => {
    const c = await client(edgeA);
    await listing(c, ['maps__route']);
    const changes: number[] = [];
    c.onNotification('notifications/tools/list_changed', () => changes.push(Date.now()));
    // The registry write in b's own bucket, seen by a watcher on b's server.
    const bus = await NatsBus.connect({ servers: topo.server('b').url, name: 'test-watch-b' });
    let writtenAt = 0;
    let seenAt = 0;
    const stopWatch = await (
      await bus.bucket('reg_b')
    ).watch('srv.core-b2.', (_k, entry) => {
      // The envelope's timestamp: core-b2's clock when it wrote the entry (the same host's clock).
      if (entry && writtenAt === 0) writtenAt = (entry.value as { ts: number }).ts;
      if (entry) seenAt = Date.now();
    });
    let b2: Proc | undefined;
    try {
      b2 = await core('core-b2', 'b', [stdio('tides', ['high'])]);
      await eventually(async () => {
        // (One may come before: the edge telling of b's own server, learned late at start.)
        if (writtenAt === 0 || !changes.some((t) => t >= writtenAt)) throw new Error('no list_changed yet');
      }, 30_000);
      // When a's edge decided (its log line's time): the part the index and the core info read took.
      const told = edgeA.out
        .lines()
        .filter((l) => /aggregate sessions are told/.test(l) && l.includes('tides'))
        .map((l) => {
          const j = JSON.parse(l) as { time: number; learnedInMs: number };
          return `${j.time - writtenAt} (of which the cores' info ${j.learnedInMs})`;
        });
      const latency = changes.find((t) => t >= writtenAt)! - writtenAt;
      console.log(
        `# registry write in b -> a's edge decides: ${told.join(', ')} ms -> list_changed at a's client: ${latency} ms (the entry seen by a watcher on b's bucket: ${seenAt - writtenAt} ms)`,
      );
      assert.ok(latency >= 0 && latency < 10_000, `${latency} ms`);
      const tools = names(await c.listTools());
      assert.ok(tools.includes('tides__high'), tools.join(', '));
      assert.match(text(await c.callTool({ name: 'tides__high', arguments: {} })), /high/);
      // It leaves cleanly (its keys deleted): another list_changed, and its tools go.
      const before = changes.length;
      await stopChild(b2.child);
      b2 = undefined;
      await eventually(async () => {
        if (changes.length === before) throw new Error('no list_changed after the leave');
      }, 30_000);
      await eventually(async () => {
        const now = names(await c.listTools());
        if (now.includes('tides__high')) throw new Error(`still listed: ${now.join(', ')}`);
      }, 10_000);
    } finally {
      stopWatch();
      await bus.close();
      if (b2) await stopChild(b2.child);
    }
  });

  test("a single-role gateway's /mcp merges the same way: b's tools and the domain's, callable", async () => {
    const c = await client(single);
    await listing(c, ['notes__jot', 'maps__route', 'finance__ledger__post']);
    assert.match(text(await c.callTool({ name: 'notes__jot', arguments: {} })), /jot/);
    const r = await c.callTool({ name: 'maps__route', arguments: { to: 'Tromsø' } });
    assert.deepEqual(JSON.parse((r.content as Array<{ text: string }>)[0]!.text), {
      tool: 'route',
      arguments: { to: 'Tromsø' },
    });
    assert.match(text(await c.callTool({ name: 'finance__ledger__balance', arguments: {} })), /balance/);
  });

  test("a domain named like a region's server is refused at start, saying why", async () => {
    const file = join(dir, 'core-clash.json');
    const port = await freePort();
    writeFileSync(
      file,
      JSON.stringify({
        store: { kind: 'memory' },
        ...coreDoc('core-clash', 'b', [stdio('other', ['x'])], port, { federation: { domain: 'maps' } }),
      }),
    );
    const child = spawn(process.execPath, [MAIN, 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = collectOutput(child);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.equal(code, 1);
    assert.match(
      out.lines().join('\n'),
      /refused to join the federation: federation.domain "maps" is the name of a server of gateway "core-b"/,
    );
  });
});
