/**
 * One control plane for two regions (docs/federation.md, "Control plane"; `federation.controlPlane.region`):
 * the test's own two NATS servers (region a the leaf-node hub, b a spoke, a JetStream domain each), a
 * sidecar gateway in each region, both naming region a's bucket. A policy written through b's gateway
 * (into a's JetStream, across the leaf link) is enforced by both, seen by the official SDK client;
 * quota limits written in a reach b. With a's NATS server gone, b keeps what it applied and refuses
 * writes (503); once a is back, a change written through b reaches both again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  api,
  hasRevision,
  names,
  refusal,
  startGateway,
  until,
  type Gateway,
} from '../helpers/control-plane.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import { stopChild } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const RUN = randomBytes(3).toString('hex');
const BUCKET = 'mcpgw-control';

const denying = (tool: string) => ({
  default: 'allow',
  rules: [{ effect: 'deny', servers: ['alpha'], tools: [tool] }],
});

describe('control plane: one bucket for two regions', { timeout: 180_000 }, () => {
  let nats: NatsTopology;
  let ga: Gateway;
  let gb: Gateway;
  let ca: SdkClient;
  let cb: SdkClient;

  before(async () => {
    nats = await startNatsTopology(['a', 'b']);
    const run = (region: string) => ({
      nats: nats.server(region).url,
      bucket: BUCKET,
      region,
      run: RUN,
      controlRegion: 'a',
      antiEntropyMs: 1_000,
    });
    ga = await startGateway('ra', run('a'));
    gb = await startGateway('rb', run('b'));
    ca = await connectSdk('v2', `${ga.url}/mcp`);
    cb = await connectSdk('v2', `${gb.url}/mcp`);
  });

  after(async () => {
    for (const c of [ca, cb]) await c?.close().catch(() => {});
    await Promise.all([ga, gb].filter(Boolean).map((g) => stopChild(g.child)));
    await nats?.close();
  });

  test('a change written in either region is enforced in both; b keeps the last values while a is away', async () => {
    const put = await api(gb, 'PUT', '/policies/*', denying('two'));
    assert.equal(put.status, 200, JSON.stringify(put.json));
    for (const [gw, c] of [
      [ga, ca],
      [gb, cb],
    ] as const) {
      await until(gw, hasRevision('policy._global', put.json.version), `the policy at ${gw.name}`);
      const listed = await names(c);
      assert.ok(!listed.includes('alpha__two') && listed.includes('alpha__one'), `${gw.name}: ${listed}`);
      assert.equal((await refusal(c.callTool({ name: 'alpha__two', arguments: {} }))).code, -32602);
    }

    const limits = await api(ga, 'PUT', '/quota-limits', {
      servers: { alpha: { tools: { one: { limit: 1, windowMs: 600_000 } } } },
    });
    assert.equal(limits.status, 200, JSON.stringify(limits.json));
    await until(gb, hasRevision('quotas', limits.json.revision), 'the limits at b');
    assert.ok(!(await cb.callTool({ name: 'alpha__one', arguments: {} })).isError);
    assert.equal(
      (await refusal(cb.callTool({ name: 'alpha__one', arguments: {} }))).data?.code,
      'GW_QUOTA_TOOL',
    );

    // Region a (and the control plane's bucket with it) gone: b serves on with what it applied.
    await nats.server('a').kill();
    assert.ok(!(await names(cb)).includes('alpha__two'));
    assert.equal((await refusal(cb.callTool({ name: 'alpha__two', arguments: {} }))).code, -32602);
    const refused = await api(gb, 'PUT', '/policies/*', denying('one'));
    assert.equal(refused.status, 503, JSON.stringify(refused.json));

    await nats.server('a').restart();
    // Writes through b reach a's bucket again once the leaf link is back (retried until then).
    let again: Awaited<ReturnType<typeof api>> | undefined;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      again = await api(gb, 'PUT', '/policies/*', denying('pid'));
      if (again.status === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(again?.status, 200, JSON.stringify(again?.json));
    for (const [gw, c] of [
      [ga, ca],
      [gb, cb],
    ] as const) {
      await until(gw, hasRevision('policy._global', again!.json.version), `the change at ${gw.name}`, 20_000);
      const listed = await names(c);
      assert.ok(listed.includes('alpha__two') && !listed.includes('alpha__pid'), `${gw.name}: ${listed}`);
    }
  });
});
