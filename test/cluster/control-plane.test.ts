/**
 * The control plane on the bus (docs/federation.md, "Control plane"): three `role: single` gateway
 * processes that share nothing but NATS (sidecars: memory stores, no Postgres, no Redis). A policy
 * published through one gateway's admin API is enforced by every gateway (tools/list filtered, the call
 * refused, seen by the official SDK client), with the propagation measured; quota limits published with
 * the `mcpgw` CLI reach every gateway and are enforced; an invalid entry (through the API: 400; written
 * straight to the bus: refused by every gateway) leaves the previous values in force; a gateway started
 * after the changes has them from its first request. The machine's NATS (127.0.0.1:4222), with a bucket
 * and a region of this run's own.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import { configFile, mcpgw } from '../helpers/cli.js';
import {
  api,
  hasRevision,
  names,
  percentile,
  refusal,
  startGateway as startSidecar,
  status,
  until,
  type Gateway,
} from '../helpers/control-plane.js';
import { stopChild } from '../helpers/net.js';
import { connectSdk, type SdkClient } from '../helpers/sdk-clients.js';

const NATS = 'nats://127.0.0.1:4222';
const RUN = randomBytes(4).toString('hex');
const BUCKET = `cp_test_${RUN}`;
const REGION = `cp${RUN}`;
const startGateway = (name: string) =>
  startSidecar(name, { nats: NATS, bucket: BUCKET, region: REGION, run: RUN });

const DENY_TWO = { default: 'allow', rules: [{ effect: 'deny', servers: ['alpha'], tools: ['two'] }] };

describe(
  'control plane: policies and quota limits over the bus, three sidecar gateways',
  { timeout: 180_000 },
  () => {
    const gateways: Gateway[] = [];
    const clients = new Map<string, SdkClient>();
    let bus: NatsBus;
    let policyRevision = 0;

    before(async () => {
      bus = await NatsBus.connect({ servers: NATS, name: `control-plane-test-${RUN}` });
      gateways.push(...(await Promise.all(['gw1', 'gw2', 'gw3'].map(startGateway))));
      for (const gw of gateways) clients.set(gw.name, await connectSdk('v2', `${gw.url}/mcp`));
    });

    after(async () => {
      for (const c of clients.values()) await c.close().catch(() => {});
      await Promise.all(gateways.map((g) => stopChild(g.child)));
      await bus?.destroyStream(`KV_${BUCKET}`);
      await bus?.destroyStream(`KV_reg_${REGION}`);
      await bus?.close();
    });

    test('a policy published through one gateway is enforced at every gateway (SDK client)', async () => {
      for (const gw of gateways)
        assert.ok((await names(clients.get(gw.name)!)).includes('alpha__two'), gw.name);
      const put = await api(gateways[0]!, 'PUT', '/policies/*', DENY_TWO, { 'if-match': '"0"' });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      policyRevision = put.json.version;
      assert.ok(policyRevision >= 1);
      assert.equal(put.json.updatedBy, 'loopback');
      for (const gw of gateways) {
        await until(gw, hasRevision('policy._global', policyRevision), 'the policy');
        const c = clients.get(gw.name)!;
        const listed = await names(c);
        assert.ok(!listed.includes('alpha__two') && listed.includes('alpha__one'), `${gw.name}: ${listed}`);
        const err = await refusal(c.callTool({ name: 'alpha__two', arguments: {} }));
        assert.equal(err.code, -32602, `${gw.name}: ${err.message}`);
        assert.match(err.message, /Unknown tool: alpha__two/);
        // Every gateway reads the same entry: who wrote it, from where, at which revision.
        const got = await api(gw, 'GET', '/policies/*');
        assert.equal(got.status, 200);
        assert.equal(got.json.version, policyRevision);
        assert.deepEqual(got.json.policy, DENY_TWO);
      }
      const s = await status(gateways[2]!);
      const applied = s.applied.find((a) => a.key === 'policy._global')!;
      assert.equal(applied.gateway, `gw1-${RUN}`);
      assert.equal(applied.updatedBy, 'loopback');
      // A stale If-Match is refused, naming the current revision.
      const stale = await api(gateways[1]!, 'PUT', '/policies/*', DENY_TWO, { 'if-match': '"0"' });
      assert.equal(stale.status, 409);
      assert.equal(stale.json.error.currentVersion, policyRevision);
    });

    test('propagation: 30 policy changes written on gw1, applied by gw2 and gw3', async () => {
      const lags: number[] = [];
      const scopes = ['acme', 'bank', 'corp'];
      for (let i = 0; i < 30; i++) {
        const scope = scopes[i % scopes.length]!;
        const t0 = Date.now();
        const put = await api(gateways[0]!, 'PUT', `/policies/${scope}`, {
          default: 'allow',
          rules: [{ effect: 'deny', servers: ['alpha'], tools: [`t${i}`] }],
        });
        assert.equal(put.status, 200, JSON.stringify(put.json));
        for (const gw of gateways.slice(1)) {
          const s = await until(gw, hasRevision(`policy.${scope}`, put.json.version), `change ${i}`);
          const a = s.applied.find((x) => x.key === `policy.${scope}`)!;
          lags.push(a.appliedAt - t0);
        }
      }
      lags.sort((a, b) => a - b);
      const p50 = percentile(lags, 50);
      const p99 = percentile(lags, 99);
      console.log(`control-plane propagation over ${lags.length} applications: p50 ${p50} ms, p99 ${p99} ms`);
      assert.ok(p99 <= 1000, `p99 ${p99} ms`);
      for (const scope of scopes)
        assert.equal((await api(gateways[0]!, 'DELETE', `/policies/${scope}`)).status, 204);
    });

    test('quota limits published with the CLI reach every gateway and are enforced', async () => {
      const limits = { servers: { alpha: { tools: { one: { limit: 2, windowMs: 60_000 } } } } };
      const file = configFile({});
      writeFileSync(file, JSON.stringify(limits));
      const set = await mcpgw(['quota-limits', 'set', file, '--url', gateways[1]!.url]);
      assert.equal(set.code, 0, set.stderr);
      const revision = Number(/revision (\d+)/.exec(set.stdout)?.[1]);
      assert.ok(revision > 0, set.stdout);
      for (const gw of gateways) {
        await until(gw, hasRevision('quotas', revision), 'the quota limits');
        const c = clients.get(gw.name)!;
        for (let i = 0; i < 2; i++)
          assert.ok(!(await c.callTool({ name: 'alpha__one', arguments: {} })).isError);
        const err = await refusal(c.callTool({ name: 'alpha__one', arguments: {} }));
        assert.equal(err.data?.code, 'GW_QUOTA_TOOL', `${gw.name}: ${JSON.stringify(err)}`);
        // The rest keeps the file's limits.
        assert.ok(!(await c.callTool({ name: 'alpha__pid', arguments: {} })).isError);
      }
      const got = await mcpgw(['quota-limits', 'get', '--url', gateways[2]!.url]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(JSON.parse(got.stdout).limits, limits);
    });

    test('an invalid entry is refused and the previous one stays in force', async () => {
      // Through the API: refused before it reaches the bus, naming the field.
      const bad = await api(gateways[0]!, 'PUT', '/policies/*', { default: 'maybe' });
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error.field, 'default');
      const badLimits = await api(gateways[0]!, 'PUT', '/quota-limits', {
        tool: { limit: -1, windowMs: 1000 },
      });
      assert.equal(badLimits.status, 400);
      assert.equal(badLimits.json.error.field, 'tool.limit');
      const notALimit = await api(gateways[0]!, 'PUT', '/quota-limits', { store: 'redis' });
      assert.equal(notALimit.status, 400);
      assert.match(notALimit.json.error.message, /store/);

      // Straight to the bus (a writer that skipped the checks): every gateway refuses it whole.
      const bucket = await bus.bucket(BUCKET);
      const meta = { v: 1, by: 'test', at: new Date().toISOString(), gateway: 'test' };
      const badPolicy = await bucket.put('policy._global', {
        ...meta,
        kind: 'policy',
        scope: '*',
        policy: { default: 'allow', rules: [{ effect: 'sometimes', tools: ['one'] }] },
      });
      const badQuotas = await bucket.put('quotas', {
        ...meta,
        kind: 'quotas',
        limits: { tool: { limit: 0 } },
      });
      for (const gw of gateways) {
        const s = await until(gw, hasRevision('quotas', badQuotas), 'the bad entries');
        const refusedPolicy = s.refused.find((r) => r.key === 'policy._global');
        assert.equal(refusedPolicy?.revision, badPolicy);
        assert.match(refusedPolicy!.reason, /rules\.0\.effect/);
        assert.match(s.refused.find((r) => r.key === 'quotas')!.reason, /limits\.tool\.limit/);
        // The last good ones are still what is enforced.
        assert.equal(s.applied.find((a) => a.key === 'policy._global')?.revision, policyRevision);
        const c = clients.get(gw.name)!;
        assert.ok(!(await names(c)).includes('alpha__two'), gw.name);
        assert.equal(
          (await refusal(c.callTool({ name: 'alpha__one', arguments: {} }))).data?.code,
          'GW_QUOTA_TOOL',
        );
        assert.ok(
          gw.output.join('').includes('control plane entry refused: the last good value stays in force'),
          `${gw.name} logs the refusal`,
        );
      }
      // A good write replaces the bad entry (no If-Match: the bad one has no version to name).
      const fixed = await api(gateways[2]!, 'PUT', '/policies/*', DENY_TWO);
      assert.equal(fixed.status, 200);
      policyRevision = fixed.json.version;
      for (const gw of gateways) {
        const s = await until(gw, hasRevision('policy._global', policyRevision), 'the fixed policy');
        assert.ok(!s.refused.some((r) => r.key === 'policy._global'), gw.name);
      }
      // The bus keeps the revisions: who wrote what, from which gateway, and what was refused.
      const h = await api(gateways[1]!, 'GET', '/control-plane/history/policy._global');
      assert.equal(h.status, 200, JSON.stringify(h.json));
      const [fixedRev, badRev, firstRev] = h.json.revisions;
      assert.equal(fixedRev.revision, policyRevision);
      assert.equal(fixedRev.gateway, `gw3-${RUN}`);
      assert.deepEqual(fixedRev.value, DENY_TWO);
      assert.equal(badRev.revision, badPolicy);
      assert.equal(badRev.valid, false);
      assert.match(badRev.reason, /rules\.0\.effect/);
      assert.equal(firstRev.gateway, `gw1-${RUN}`);
      assert.equal(firstRev.updatedBy, 'loopback');
      const cli = await mcpgw(['control-plane', 'history', 'quotas', '--url', gateways[0]!.url]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /refused/);
      assert.match(cli.stdout, /set/);
      assert.equal((await api(gateways[0]!, 'GET', '/control-plane/history/nope')).status, 400);
    });

    test('a gateway started after the changes has them from its first request', async () => {
      const late = await startGateway('gw4');
      gateways.push(late);
      const s = await status(late);
      assert.equal(s.applied.find((a) => a.key === 'policy._global')?.revision, policyRevision);
      assert.ok(
        s.refused.some((r) => r.key === 'quotas'),
        'the bad quota entry is refused here too',
      );
      const c = await connectSdk('v2', `${late.url}/mcp`);
      clients.set(late.name, c);
      assert.ok(!(await names(c)).includes('alpha__two'));
      // The bad quota entry is the bus's current one: this gateway never had a good one, so the file's
      // limits are in force here (100 a minute per tool), and the policy is the bus's.
      for (let i = 0; i < 3; i++)
        assert.ok(!(await c.callTool({ name: 'alpha__one', arguments: {} })).isError);
      // A good quota entry then reaches it as any other gateway.
      const put = await api(late, 'PUT', '/quota-limits', {
        servers: { alpha: { tools: { one: { limit: 1, windowMs: 60_000 } } } },
      });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      const refused = await refusal(c.callTool({ name: 'alpha__one', arguments: {} }));
      assert.equal(refused.data?.code, 'GW_QUOTA_TOOL');
      // Removed: every gateway goes back to its file's limits.
      assert.equal((await api(gateways[0]!, 'DELETE', '/quota-limits')).status, 204);
      for (const gw of gateways)
        await until(gw, (x) => !x.applied.some((a) => a.key === 'quotas'), 'the removal');
    });
  },
);
