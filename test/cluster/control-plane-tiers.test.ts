/**
 * The control plane reaches the split roles too (docs/federation.md, "Control plane"): a `role: core`
 * process following the bucket enforces a policy and quota limits written through the admin API of a
 * `role: single` sidecar of the same region; the client, an SDK client at a `role: edge` in front of the
 * core, sees tools/list filtered and the call refused, without reconnecting. The machine's NATS, with a
 * bucket and a region of this run's own.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import {
  api,
  hasRevision,
  names,
  refusal,
  startGateway,
  until,
  type Gateway,
} from '../helpers/control-plane.js';
import { freePort, ROOT, spawnUntil, stopChild } from '../helpers/net.js';
import { makeSigningKey } from '../helpers/pki.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const MAIN = `${ROOT}dist/cli/main.js`;
const SCRIPTED = `${ROOT}dist/test/fixtures/scripted-server.js`;
const NATS = 'nats://127.0.0.1:4222';
const RUN = randomBytes(4).toString('hex');
const BUCKET = `cp_tiers_${RUN}`;
const REGION = `cpt${RUN}`;

describe('control plane: a core behind an edge follows what a sidecar wrote', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cp-tiers-'));
  let sidecar: Gateway;
  let core: ChildProcess;
  let edge: ChildProcess;
  let client: SdkClient;
  let bus: NatsBus;
  const coreOutput: string[] = [];

  async function spawnNode(name: string, doc: object): Promise<ChildProcess> {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(doc));
    return spawnUntil(process.execPath, [MAIN, 'start', '--config', file], /mcpgw listening/, {}, 60_000);
  }

  before(async () => {
    bus = await NatsBus.connect({ servers: NATS, name: `control-plane-tiers-${RUN}` });
    sidecar = await startGateway('sidecar', { nats: NATS, bucket: BUCKET, region: REGION, run: RUN });
    const edgeKey = makeSigningKey(dir, 'edge-signing');
    const jwk = createPublicKey(readFileSync(edgeKey.pub, 'utf8')).export({ format: 'jwk' });
    writeFileSync(join(dir, 'trusted.jwks.json'), JSON.stringify({ keys: [jwk] }));
    const [corePort, edgePort] = [await freePort(), await freePort()];
    core = await spawnNode('core', {
      role: 'core',
      region: REGION,
      listen: { host: '127.0.0.1', port: corePort },
      log: { level: 'info' },
      store: { kind: 'memory' },
      internal: { id: `core-${RUN}`, trustedKeys: [join(dir, 'trusted.jwks.json')] },
      servers: [
        {
          name: 'alpha',
          transport: 'stdio',
          command: process.execPath,
          args: [SCRIPTED],
          env: { FIXTURE_CATALOG: JSON.stringify({ tools: ['one', 'two'] }) },
        },
      ],
      quotas: { enabled: true, store: 'memory' },
      federation: {
        bus: 'nats',
        natsUrls: [NATS],
        gatewayId: `core-${RUN}`,
        controlPlane: { policies: true, quotas: true, bucket: BUCKET },
      },
    });
    core.stdout!.on('data', (b: Buffer) => coreOutput.push(b.toString()));
    edge = await spawnNode('edge', {
      role: 'edge',
      region: REGION,
      listen: { host: '127.0.0.1', port: edgePort },
      log: { level: 'info' },
      store: { kind: 'memory' },
      auth: { mode: 'none' },
      cores: [{ region: REGION, id: `core-${RUN}`, url: `http://127.0.0.1:${corePort}` }],
      internal: { id: `edge-${RUN}`, signingKey: edgeKey.priv },
    });
    client = await connectSdk('v2', `http://127.0.0.1:${edgePort}/mcp`);
  });

  after(async () => {
    await client?.close().catch(() => {});
    await Promise.all([stopChild(edge), stopChild(core), stopChild(sidecar?.child)]);
    await bus?.destroyStream(`KV_${BUCKET}`);
    await bus?.destroyStream(`KV_reg_${REGION}`);
    await bus?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a policy and quota limits written on the sidecar are enforced by the core', async () => {
    assert.ok((await names(client)).includes('alpha__two'));
    // Limits first: the core applies the bucket in order, so once the policy is in force so are they.
    const limits = await api(sidecar, 'PUT', '/quota-limits', {
      servers: { alpha: { tools: { one: { limit: 1, windowMs: 600_000 } } } },
    });
    assert.equal(limits.status, 200, JSON.stringify(limits.json));
    await until(sidecar, hasRevision('quotas', limits.json.revision), 'the limits on the sidecar');
    const put = await api(sidecar, 'PUT', '/policies/*', {
      default: 'allow',
      rules: [{ effect: 'deny', servers: ['alpha'], tools: ['two'] }],
    });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    await until(sidecar, hasRevision('policy._global', put.json.version), 'the policy on the sidecar');
    // The core has no admin API: its enforcement is what the client sees (polled, bounded).
    const deadline = Date.now() + 10_000;
    while ((await names(client)).includes('alpha__two')) {
      assert.ok(Date.now() < deadline, 'the core did not apply the policy in 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const denied = await refusal(client.callTool({ name: 'alpha__two', arguments: {} }));
    assert.equal(denied.code, -32602);
    assert.ok(!(await client.callTool({ name: 'alpha__one', arguments: {} })).isError);
    const spent = await refusal(client.callTool({ name: 'alpha__one', arguments: {} }));
    assert.equal(spent.data?.code, 'GW_QUOTA_TOOL', JSON.stringify(spent));
    assert.ok(coreOutput.join('').includes('control plane: quota limits in force'));
  });
});
