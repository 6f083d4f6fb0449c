/**
 * The control plane while its NATS is away (docs/federation.md, "Control plane"): two sidecar gateways
 * on the test's own nats-server keep enforcing the policy and the quota limits last applied, their SDK
 * sessions stay open, a write is refused (503, naming the bus) and changes nothing; once the server is
 * back, a change written straight to the bucket and one written through a gateway reach both.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import {
  api,
  hasRevision,
  names,
  refusal,
  startGateway,
  status,
  until,
  type Gateway,
} from '../helpers/control-plane.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import { stopChild } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const RUN = randomBytes(3).toString('hex');
const REGION = `out${RUN}`;
const BUCKET = 'mcpgw-control';

const denying = (tool: string) => ({
  default: 'allow',
  rules: [{ effect: 'deny', servers: ['alpha'], tools: [tool] }],
});

describe('control plane: NATS down, then back', { timeout: 180_000 }, () => {
  let nats: NatsTopology;
  const gateways: Gateway[] = [];
  const clients: SdkClient[] = [];

  before(async () => {
    nats = await startNatsTopology([REGION]);
    const r = { nats: nats.server(REGION).url, bucket: BUCKET, region: REGION, run: RUN };
    gateways.push(await startGateway('o1', r), await startGateway('o2', r));
    for (const gw of gateways) clients.push(await connectSdk('v2', `${gw.url}/mcp`));
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await Promise.all(gateways.map((g) => stopChild(g.child)));
    await nats?.close();
  });

  test('the last values stay in force while the bus is away; changes flow again once it is back', async () => {
    const [g1, g2] = gateways as [Gateway, Gateway];
    const put = await api(g1, 'PUT', '/policies/*', denying('two'));
    assert.equal(put.status, 200, JSON.stringify(put.json));
    const limits = await api(g1, 'PUT', '/quota-limits', {
      servers: { alpha: { tools: { one: { limit: 1, windowMs: 600_000 } } } },
    });
    assert.equal(limits.status, 200, JSON.stringify(limits.json));
    for (const gw of gateways) await until(gw, hasRevision('quotas', limits.json.revision), 'the limits');

    await nats.server(REGION).kill();
    for (const gw of gateways) await until(gw, (s) => !s.connected, 'the bus going away', 15_000);

    // Degraded: the same sessions, the same policy and limits.
    for (const [i, c] of clients.entries()) {
      assert.ok(!(await names(c)).includes('alpha__two'), `gateway ${i + 1}`);
      assert.equal((await refusal(c.callTool({ name: 'alpha__two', arguments: {} }))).code, -32602);
      assert.ok(!(await c.callTool({ name: 'alpha__one', arguments: {} })).isError);
      const spent = await refusal(c.callTool({ name: 'alpha__one', arguments: {} }));
      assert.equal(spent.data?.code, 'GW_QUOTA_TOOL');
    }
    const refusedWrite = await api(g2, 'PUT', '/policies/*', denying('one'));
    assert.equal(refusedWrite.status, 503);
    assert.match(refusedWrite.json.error.message, /control plane bus/);
    for (const gw of gateways) {
      const s = await status(gw);
      assert.equal(s.applied.find((a) => a.key === 'policy._global')?.revision, put.json.version);
    }

    await nats.server(REGION).restart();
    for (const gw of gateways) await until(gw, (s) => s.connected, 'the bus coming back', 20_000);

    // Written straight to the bucket (as by another gateway): both pick it up (watch or reconcile).
    const bus = await NatsBus.connect({ servers: nats.server(REGION).url });
    try {
      const rev = await (
        await bus.bucket(BUCKET)
      ).put('policy._global', {
        v: 1,
        kind: 'policy',
        scope: '*',
        policy: denying('pid'),
        by: 'operator-script',
        at: new Date().toISOString(),
        gateway: 'elsewhere',
      });
      for (const gw of gateways)
        await until(gw, hasRevision('policy._global', rev), 'the direct write', 20_000);
    } finally {
      await bus.close();
    }
    for (const c of clients) {
      const listed = await names(c);
      assert.ok(listed.includes('alpha__two') && !listed.includes('alpha__pid'), listed.join());
    }

    // And through a gateway, as before the outage.
    const after = await api(g2, 'PUT', '/policies/*', denying('one'));
    assert.equal(after.status, 200, JSON.stringify(after.json));
    await until(g1, hasRevision('policy._global', after.json.version), 'the write after the outage');
    assert.equal((await refusal(clients[0]!.callTool({ name: 'alpha__one', arguments: {} }))).code, -32602);
  });
});
