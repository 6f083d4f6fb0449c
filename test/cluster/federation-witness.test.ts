/**
 * DR pairing with a witness (`federation.drWitness`): three NATS servers, the witness region w the
 * leaf-node hub and regions a and b its spokes, a's leaf link running through a TCP link the test cuts.
 * Cutting it is a partition with both regions alive: a's core and a's edge run on, cut off from w and b.
 * a's core must stop running the server b also serves before b's core starts standing in for it (never
 * both), b takes over, and a's sessions (through a's edge, which still reaches b's core over HTTP) are
 * served in b. Healed: a serves again and b lets go.
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
import { eventually, initializeAtCore, silent } from '../helpers/federation.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { collectOutput, type Output } from '../helpers/output.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';
import { startTcpLink, type TcpLink } from '../helpers/tcp-link.js';
import { makeSigningKey } from '../helpers/pki.js';

const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const fast = { heartbeatMs: 500, downAfterMs: 2000, antiEntropyMs: 2000 };
const WHERE = 'mem://where';

describe(
  'federation DR pairing with a witness: a partition between live regions',
  { timeout: 180_000 },
  () => {
    const prefix = `mcpgw-test-witness-${randomBytes(6).toString('hex')}`;
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-witness-'));
    const children: ChildProcess[] = [];
    const clients: SdkClient[] = [];
    let topo: NatsTopology;
    let link: TcpLink;
    let key: { priv: string; pub: string };
    let signer: InternalTokenSigner;
    const urls: Record<string, string> = {};
    const outputs: Record<string, Output> = {};

    const shared = (region: string, name = 'shared') => ({
      name,
      transport: 'stdio',
      command: process.execPath,
      args: [SCRIPTED],
      env: {
        FIXTURE_NAME: `region-${region}`,
        FIXTURE_CATALOG: JSON.stringify({ tools: ['echo'], resources: [WHERE] }),
      },
    });

    async function start(name: string, doc: Record<string, unknown>): Promise<string> {
      const port = await freePort();
      const file = join(dir, `${name}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          store: { kind: 'memory' },
          log: { level: process.env.FED_DEBUG ? 'debug' : 'info' },
          sessions: { store: 'redis' },
          redis: { url: REDIS_URL, keyPrefix: prefix },
          listen: { host: '127.0.0.1', port },
          ...doc,
          federation: {
            bus: 'nats',
            natsUrls: [topo.server(doc.region as string).url],
            regions: ['a', 'b'],
            gatewayId: name,
            drPartners: { a: 'b' },
            drWitness: 'w',
            ...fast,
          },
        }),
      );
      const child = await spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/);
      children.push(child);
      outputs[name] = collectOutput(child);
      return (urls[name] = `http://127.0.0.1:${port}`);
    }

    /** An `initialize` of scope `shared` sent straight to a core (as itself, or standing in for a). */
    async function probe(core: 'core-a' | 'core-b', drFor?: string): Promise<number> {
      return (await initializeAtCore(urls[core]!, await signer.tokenFor(ANONYMOUS, core), 'shared', drFor))
        .status;
    }

    async function client(server: string): Promise<SdkClient> {
      const c = await connectSdk('v2', `${urls['edge-a']}/servers/${server}/mcp`);
      clients.push(c);
      return c;
    }

    async function where(c: SdkClient): Promise<string> {
      const r = await c.readResource({ uri: WHERE });
      return /from (region-\w+)/.exec(JSON.stringify(r.contents))?.[1] ?? 'unknown';
    }

    before(async () => {
      const leafPort = await freePort();
      link = await startTcpLink(await freePort(), leafPort);
      topo = await startNatsTopology(['w', 'a', 'b'], {
        leafPort,
        leafVia: { a: link.port },
        leafAdvertise: link.port,
      });
      key = makeSigningKey(dir, 'edge-signing');
      signer = new InternalTokenSigner({ keyFile: key.priv, issuer: 'probe', region: 'a', log: silent });
      const core = (region: string, servers: object[]) => ({
        role: 'core',
        region,
        internal: { id: `core-${region}`, trustedKeys: [key.pub] },
        servers,
      });
      // b first: its index must have learned a's core (a 2.9 mirror can take long) before the partition,
      // or it never knows of a region to stand in for.
      await start('core-b', core('b', [shared('b'), shared('b', 'maps')]));
      await start('core-a', core('a', [shared('a')]));
      await outputs['core-b']!.waitFor(/federation: region a up/, 0, 45_000);
      await start('edge-a', { role: 'edge', region: 'a', internal: { id: 'edge-a', signingKey: key.priv } });
      // a's edge knows both cores once it reaches a server only b serves.
      await eventually(() => client('maps'), 45_000);
    });

    after(async () => {
      signer?.close();
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await Promise.all(children.map((c) => stopChild(c)));
      await topo?.close();
      await link?.close();
      if (!process.env.FED_DEBUG) rmSync(dir, { recursive: true, force: true });
    });

    test('connected: a serves its own server, b refuses to stand in', async () => {
      const c = await client('shared');
      assert.equal(await where(c), 'region-a');
      assert.equal(await eventually(async () => assert.equal(await probe('core-a'), 200)), undefined);
      assert.equal(await probe('core-b', 'a'), 503);
    });

    test("partitioned: a stops before b starts (never both), b serves a's sessions; healed: a again", async () => {
      const c = await client('shared');
      assert.equal(await where(c), 'region-a');
      await link.cut();
      const cutAt = Date.now();
      let aLast = cutAt;
      let bFirst = 0;
      let aLastRound = -1;
      let bFirstRound = -1;
      // Sample both cores in turn (a, then b) until b stands in, and a while after. A round where a
      // answers 200 after the round of b's first 200 is both serving: a must never answer again.
      for (let round = 0; Date.now() - cutAt < 30_000; round++) {
        const a = await probe('core-a');
        const ta = Date.now();
        const b = await probe('core-b', 'a');
        const tb = Date.now();
        if (a === 200) [aLast, aLastRound] = [ta, round];
        if (b === 200 && bFirst === 0) [bFirst, bFirstRound] = [tb, round];
        if (bFirst > 0 && tb - bFirst > 1_000) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const dr = (n: string) =>
        outputs[n]!.lines()
          .filter((l) => /DR|witness|region status|down/.test(l))
          .slice(-8)
          .join('\n');
      assert.ok(
        bFirst > 0,
        `b never stood in for a during the partition (a last served ${aLast - cutAt} ms after the cut)\n${dr('core-b')}\n${dr('core-a')}`,
      );
      assert.ok(
        aLastRound <= bFirstRound,
        `a still served ${aLast - bFirst} ms after b began standing in (round ${aLastRound} > ${bFirstRound})`,
      );
      assert.equal(await probe('core-a'), 503, "a's core serves while cut off from the witness");
      console.log(
        `# witness: a stopped ${aLast - cutAt} ms after the cut, b stood in ${bFirst - cutAt} ms after it`,
      );
      // a's session (a's edge reaches b's core over HTTP) is served in b.
      assert.equal(await eventually(() => where(c), 20_000), 'region-b');

      await link.heal();
      await eventually(async () => assert.equal(await probe('core-a'), 200), 30_000);
      await eventually(async () => assert.equal(await probe('core-b', 'a'), 503), 30_000);
      const home = await client('shared');
      assert.equal(await eventually(() => where(home), 20_000), 'region-a');
    });
  },
);
