/**
 * BusControlPlane on the in-process bus (two gateways on one fabric): what is put in force and when, the
 * precedence (the file's policy is the baseline of `*`; the bus replaces a limit key whole), refusals of
 * bad entries with the last good value kept, tombstones, and revision-fenced writes.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { InProcessBus, InProcessFabric } from '../../shared/adapters/memory/federation-bus.js';
import type { PolicyConfig } from '../../shared/config/security-schema.js';
import type { QuotaLimits } from '../../shared/config/schema.js';
import { ControlRevisionConflict } from '../../shared/ports/control-plane.js';
import { BusControlPlane } from '../../federation/control-plane.js';
import { silent } from '../helpers/federation.js';

const BASELINE: PolicyConfig = { default: 'allow', rules: [] };

async function gateway(fabric: InProcessFabric, id: string) {
  const bus = new InProcessBus(fabric);
  const seen = {
    global: undefined as PolicyConfig | undefined,
    tenants: new Map<string, PolicyConfig>(),
    limits: undefined as QuotaLimits | undefined,
    policyApplies: 0,
  };
  const plane = new BusControlPlane({
    bus,
    bucket: await bus.bucket('control'),
    gatewayId: () => id,
    policies: {
      baseline: BASELINE,
      apply: (g, t) => {
        seen.global = g;
        seen.tenants = new Map(t);
        seen.policyApplies++;
      },
    },
    quotas: { apply: (l) => (seen.limits = l) },
    antiEntropyMs: 60_000,
    log: silent,
  });
  await plane.start();
  return { bus, plane, seen, close: async () => (await plane.close(), await bus.close()) };
}

const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(ok());
};

describe('BusControlPlane', () => {
  const closers: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of closers) await c();
  });

  test('the file baseline until the bus has a "*"; writes reach the other gateway; delete goes back', async () => {
    const fabric = new InProcessFabric();
    const a = await gateway(fabric, 'a');
    const b = await gateway(fabric, 'b');
    closers.push(a.close, b.close);
    assert.deepEqual(b.seen.global, BASELINE);
    const deny = { default: 'deny', rules: [] };
    const p = await a.plane.putPolicy('*', deny, 'alice', 0);
    assert.equal(p.updatedBy, 'alice');
    assert.equal(p.gateway, 'a');
    assert.deepEqual(a.seen.global, { default: 'deny', rules: [] }, 'in force on the writer when answered');
    await until(() => b.seen.global?.default === 'deny');
    await a.plane.putPolicy('acme', { default: 'allow', rules: [] }, 'alice');
    await until(() => b.seen.tenants.has('acme'));

    await assert.rejects(a.plane.putPolicy('*', deny, 'bob', 0), ControlRevisionConflict);
    await assert.rejects(a.plane.deletePolicy('*', 'bob', p.revision + 100), ControlRevisionConflict);
    const del = await b.plane.deletePolicy('*', 'bob', p.revision);
    assert.ok(del! > p.revision);
    await until(() => a.seen.global === BASELINE);
    assert.equal(await a.plane.policy('*'), undefined);
    assert.equal(await a.plane.deletePolicy('*', 'bob'), undefined, 'nothing left to delete');
    // "Must not exist" holds again after the tombstone.
    assert.ok((await a.plane.putPolicy('*', deny, 'carol', 0)).revision > del!);
  });

  test('a bad entry is refused whole; the last good value stays; an unchanged reread applies nothing', async () => {
    const fabric = new InProcessFabric();
    const a = await gateway(fabric, 'a');
    closers.push(a.close);
    const bucket = await a.bus.bucket('control');
    await a.plane.putQuotaLimits({ tool: { limit: 5, windowMs: 1000 } }, 'alice');
    assert.deepEqual(a.seen.limits, { tool: { limit: 5, windowMs: 1000 } });
    const meta = { v: 1, by: 'x', at: 'now', gateway: 'x' };
    const bad = [
      { ...meta, kind: 'quotas', limits: { tool: { limit: 0, windowMs: 1000 } } },
      { ...meta, kind: 'quotas', limits: { store: 'redis' } },
      { ...meta, v: 2, kind: 'quotas', limits: {} },
      'not an object',
    ];
    for (const value of bad) {
      const rev = await bucket.put('quotas', value);
      await until(() => a.plane.status().refused.some((r) => r.revision === rev));
      assert.deepEqual(a.seen.limits, { tool: { limit: 5, windowMs: 1000 } }, JSON.stringify(value));
    }
    const reasons = a.plane.status().refused.map((r) => r.reason);
    assert.equal(reasons.length, 1, 'the newest refusal per key');
    assert.match(reasons[0]!, /^v: unsupported|^value:/);
    const wrongScope = await bucket.put('policy.acme', {
      ...meta,
      kind: 'policy',
      scope: 'bank',
      policy: {},
    });
    await until(() => a.plane.status().refused.some((r) => r.revision === wrongScope));
    assert.match(a.plane.status().refused.find((r) => r.key === 'policy.acme')!.reason, /does not belong/);
    assert.equal(a.seen.tenants.size, 0);
    const applies = a.seen.policyApplies;
    await a.plane.putPolicy('bank', { default: 'allow' }, 'alice');
    assert.equal(a.seen.policyApplies, applies + 1);
    await a.plane.putPolicy('bank', { default: 'allow' }, 'alice');
    assert.equal(a.seen.policyApplies, applies + 1, 'the same policy again changes nothing in force');
  });

  test('a key removed from the bucket itself: back to the baseline', async () => {
    const fabric = new InProcessFabric();
    const a = await gateway(fabric, 'a');
    closers.push(a.close);
    await a.plane.putQuotaLimits({ user: false }, 'alice');
    assert.deepEqual(a.seen.limits, { user: false });
    await (await a.bus.bucket('control')).delete('quotas');
    await until(() => a.seen.limits !== undefined && Object.keys(a.seen.limits).length === 0);
  });
});
