/**
 * DR pairing (`federation.drPartners: { a: b }`) with separate processes over the test's own two-region
 * NATS topology and Redis sessions: while a's core lives, b's core refuses to stand in for a
 * (GW_DR_FENCED); a's core SIGKILLed under load -> b takes the DR lease within 3 s of a's last heartbeat,
 * every idempotent call succeeds (repeated in b), the non-idempotent call in flight fails clearly; a's
 * core restarted -> b releases the lease (failback), new sessions and the failed-over ones go home, and
 * b refuses again.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InternalTokenSigner } from '../../shared/identity/internal-token.js';
import { ANONYMOUS } from '../../shared/identity/principal.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { collectOutput, type Output } from '../helpers/output.js';
import { makeSigningKey } from '../helpers/pki.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import { eventually, initializeAtCore, silent } from '../helpers/federation.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
// The defaults (see federation-routing): a 2.9 mirror on a loaded machine can pause longer than a short window.
const fast = { heartbeatMs: 500, downAfterMs: 2000, antiEntropyMs: 2000 };
const WHERE = 'mem://where';

interface Proc {
  child: ChildProcess;
  out: Output;
  url: string;
  file: string;
}

describe('federation DR pairing: takeover under a fenced lease, failback', { timeout: 180_000 }, () => {
  const prefix = `mcpgw-test-dr-${randomBytes(6).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-dr-'));
  const children: ChildProcess[] = [];
  const clients: SdkClient[] = [];
  let topo: NatsTopology;
  let key: { priv: string; pub: string };
  let coreA: Proc;
  let coreB: Proc;
  let edgeA: Proc;
  let signer: InternalTokenSigner;

  const shared = (region: string) => ({
    name: 'shared',
    transport: 'stdio',
    command: process.execPath,
    args: [SCRIPTED],
    env: {
      FIXTURE_NAME: `region-${region}`,
      FIXTURE_CATALOG: JSON.stringify({ tools: ['echo', 'read_slow', 'write_slow'], resources: [WHERE] }),
    },
  });

  function writeConfig(name: string, doc: object): string {
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
    return file;
  }

  async function spawnNode(file: string, port: number): Promise<Proc> {
    const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
    children.push(child);
    return { child, out: collectOutput(child), url: `http://127.0.0.1:${port}`, file };
  }

  const federation = (region: string, gatewayId: string) => ({
    bus: 'nats',
    natsUrls: [topo.server(region).url],
    regions: ['a', 'b'],
    gatewayId,
    drPartners: { a: 'b' },
    ...fast,
  });

  async function core(region: string, servers: object[]): Promise<Proc> {
    const port = await freePort();
    const file = writeConfig(`core-${region}`, {
      role: 'core',
      region,
      listen: { host: '127.0.0.1', port },
      internal: { id: `core-${region}`, trustedKeys: [key.pub] },
      servers,
      federation: federation(region, `core-${region}`),
    });
    return spawnNode(file, port);
  }

  async function client(server: string): Promise<SdkClient> {
    const c = await connectSdk('v2', `${edgeA.url}/servers/${server}/mcp`);
    clients.push(c);
    return c;
  }

  async function where(c: SdkClient): Promise<string> {
    const r = await c.readResource({ uri: WHERE });
    return /from (region-\w+)/.exec(JSON.stringify(r.contents))?.[1] ?? 'unknown';
  }

  /** One `initialize` sent straight to b's core asking it to stand in for region a: its status. */
  async function asksBForA(): Promise<{ status: number; refused: unknown; text: string }> {
    return initializeAtCore(coreB.url, await signer.tokenFor(ANONYMOUS, 'core-b'), 'shared', 'a');
  }

  before(async () => {
    topo = await startNatsTopology(['a', 'b']);
    key = makeSigningKey(dir, 'edge-signing');
    signer = new InternalTokenSigner({ keyFile: key.priv, issuer: 'probe', region: 'a', log: silent });
    [coreA, coreB] = await Promise.all([
      core('a', [shared('a')]),
      core('b', [shared('b'), { ...shared('b'), name: 'maps' }]),
    ]);
    const port = await freePort();
    const file = writeConfig('edge-a', {
      role: 'edge',
      region: 'a',
      listen: { host: '127.0.0.1', port },
      internal: { id: 'edge-a', signingKey: key.priv },
      federation: federation('a', 'edge-a'),
    });
    edgeA = await spawnNode(file, port);
    // The edge knows both cores once it reaches a server only b serves (a 2.9 mirror on a loaded
    // machine can take long to deliver b's first heartbeat).
    await eventually(() => client('maps'), 45_000);
  });

  after(async () => {
    signer?.close();
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(children.map((c) => stopChild(c)));
    await topo?.close();
    if (!process.env.FED_DEBUG) rmSync(dir, { recursive: true, force: true });
  });

  test("while a's core lives, a's sessions are served in a and b refuses to stand in for a", async () => {
    const c = await client('shared');
    assert.equal(await where(c), 'region-a');
    const probe = await asksBForA();
    assert.equal(probe.status, 503, probe.text);
    assert.equal(probe.refused, 'dr-fenced');
    assert.match(probe.text, /GW_DR_FENCED/);
    assert.match(probe.text, /does not hold the DR lease of region a/);
  });

  let reader: SdkClient;

  test("a's core killed under load: b takes over within 3 s of a's last heartbeat; idempotent calls all succeed", async () => {
    reader = await client('shared');
    const writer = await client('shared');
    await reader.listTools();
    await writer.listTools();
    assert.equal(await where(reader), 'region-a');
    let stop = false;
    let killedAt = 0;
    let firstAfterKill = 0;
    let reads = 0;
    let writesAfter = 0;
    const readFailures: string[] = [];
    const writeFailures: string[] = [];
    const loop = async (c: SdkClient, name: string, failures: string[], onOk: () => void) => {
      while (!stop) {
        const started = Date.now();
        try {
          const r = await c.callTool({ name, arguments: {} });
          if (r.isError) failures.push(JSON.stringify(r.content));
          else {
            onOk();
            if (killedAt > 0 && started > killedAt && firstAfterKill === 0) firstAfterKill = Date.now();
          }
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const loops = [
      loop(reader, 'read_slow', readFailures, () => reads++),
      loop(reader, 'read_slow', readFailures, () => reads++),
      loop(writer, 'write_slow', writeFailures, () => {
        if (killedAt > 0) writesAfter++;
      }),
    ];
    await new Promise((r) => setTimeout(r, 800));
    const mark = coreB.out.mark();
    killedAt = Date.now();
    coreA.child.kill('SIGKILL');
    const takeover = await coreB.out.waitFor(/DR takeover/, mark, 10_000).catch((err: unknown) => {
      const fed = coreB.out.lines().filter((l) => /federation/.test(l));
      throw new Error(`${String(err)}\ncore b's federation log:\n${fed.join('\n')}`);
    });
    await new Promise((r) => setTimeout(r, 1_000));
    stop = true;
    await Promise.all(loops);

    const afterHeartbeat = Number(/"afterLastHeartbeatMs":(\d+)/.exec(takeover)?.[1]);
    console.log(
      `# DR takeover ${afterHeartbeat} ms after a's last heartbeat; first call served after the kill ${firstAfterKill - killedAt} ms after it; ${reads} reads`,
    );
    assert.ok(afterHeartbeat > 0 && afterHeartbeat < 3_000, `takeover: ${takeover}`);
    assert.deepEqual(readFailures, [], 'idempotent calls failed');
    assert.ok(reads > 10, `only ${reads} reads`);
    // The write in flight when the core died is refused, saying why; writes after it wait for b's lease.
    assert.ok(writeFailures.length >= 1, 'no write was in flight at the kill');
    for (const f of writeFailures) assert.match(f, /not idempotent/);
    assert.ok(writesAfter > 0, 'no write succeeded after the failover');
    assert.ok(firstAfterKill > 0 && firstAfterKill - killedAt < 4_000, 'not served again within 4 s');
    assert.equal(await where(reader), 'region-b', 'the session is served by the DR partner');
    assert.equal((await asksBForA()).status, 200, 'b stands in for a under its lease');
  });

  test("a's core restarted: b releases the lease, sessions go home, b refuses again", async () => {
    const mark = coreB.out.mark();
    const restartedAt = Date.now();
    coreA = await spawnNode(coreA.file, Number(new URL(coreA.url).port));
    await coreB.out.waitFor(/DR failback/, mark, 15_000);
    const released = Date.now();
    const c = await eventually(async () => {
      const n = await client('shared');
      if ((await where(n)) !== 'region-a') throw new Error('not home yet');
      return n;
    }, 15_000);
    const home = Date.now();
    console.log(
      `# failback: lease released ${released - restartedAt} ms after a's core was started; a new session home ${home - restartedAt} ms after`,
    );
    const r = await c.callTool({ name: 'echo', arguments: { n: 1 } });
    assert.match(JSON.stringify(r.content), /echo/);
    // The session that failed over continues at home from the shared session store on its next call.
    assert.equal(await where(reader), 'region-a');
    const again = await asksBForA();
    assert.equal(again.status, 503, again.text);
    assert.equal(again.refused, 'dr-fenced');
  });
});
