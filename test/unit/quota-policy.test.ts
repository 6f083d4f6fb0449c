/**
 * The `quotas:` config as a request sees it: reference defaults, tenant/server/tool overrides, dimensions
 * switched off, and what the guard does per dimension when the store fails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QuotaPolicy } from '../../edge/quota/policy.js';
import { QuotaGuard } from '../../edge/quota/quota-guard.js';
import { configSchema } from '../../shared/config/schema.js';
import type { Principal } from '../../shared/identity/principal.js';
import { createLogger } from '../../shared/log.js';
import type { QuotaStore } from '../../shared/ports/quota-store.js';

const who = (subject: string, tenant = 'default', clientApp?: string): Principal => ({
  subject,
  tenant,
  roles: [],
  scopes: [],
  clientApp,
  authMethod: 'api-key',
});
const policyOf = (quotas: object) =>
  new QuotaPolicy(configSchema.parse({ quotas: { enabled: true, ...quotas } }).quotas);
const summary = (p: QuotaPolicy['callerDimensions'] extends (...a: never[]) => infer R ? R : never) =>
  p.map((d) => `${d.name}:${d.rate.limit}/${d.rate.windowMs}`);

test('enabled with nothing else: the reference architecture defaults', () => {
  const p = policyOf({});
  assert.deepEqual(summary(p.callerDimensions(who('ann', 'default', 'app1'))), [
    'user:1000/3600000',
    'clientApp:10000/3600000',
    'global:100000/60000',
  ]);
  assert.deepEqual(summary(p.targetDimensions(who('ann'), 'github', 'create_issue')), ['tool:100/60000']);
  // The server limit is per replica, asked by the pool for the replica it picked.
  assert.deepEqual(summary(p.replicaDimensions('github', 'http://10.0.0.1/mcp')), ['server:5000/60000']);
  assert.equal(p.concurrency(who('ann'))?.limit, 20);
  // No client app known: no client-app dimension.
  assert.deepEqual(summary(p.callerDimensions(who('ann'))), ['user:1000/3600000', 'global:100000/60000']);
});

test('tenant, server and tool overrides; dimensions switched off', () => {
  const p = policyOf({
    global: false,
    tenants: {
      acme: {
        user: { limit: 50, windowMs: 60_000 },
        tenant: { limit: 500, windowMs: 60_000 },
        concurrencyPerUser: 3,
      },
    },
    servers: {
      github: {
        server: { limit: 10, windowMs: 1000 },
        tool: { limit: 7, windowMs: 1000 },
        tools: { create_issue: { limit: 2, windowMs: 1000, burst: 1 } },
      },
    },
  });
  assert.deepEqual(summary(p.callerDimensions(who('bo', 'acme'))), ['user:50/60000', 'tenant:500/60000']);
  assert.deepEqual(summary(p.callerDimensions(who('bo', 'other'))), ['user:1000/3600000']);
  assert.equal(p.concurrency(who('bo', 'acme'))?.limit, 3);
  const t = p.targetDimensions(who('bo'), 'github', 'create_issue');
  assert.deepEqual(summary(t), ['tool:2/1000']);
  assert.equal(t[0]!.rate.burst, 1);
  assert.deepEqual(summary(p.targetDimensions(who('bo'), 'github', 'list_issues')), ['tool:7/1000']);
  const [a, b] = [p.replicaDimensions('github', 'r1'), p.replicaDimensions('github', 'r2')];
  assert.deepEqual(summary(a), ['server:10/1000']);
  assert.deepEqual(summary(p.replicaDimensions('other', 'r1')), ['server:5000/60000']);
  // The user's keys share the user's slot; each replica's counter has its own key and slot.
  assert.equal(t[0]!.rate.slot, p.userSlot(who('bo')));
  assert.notEqual(a[0]!.rate.key, b[0]!.rate.key);
  assert.notEqual(a[0]!.rate.slot, b[0]!.rate.slot);
  assert.notEqual(a[0]!.rate.slot, t[0]!.rate.slot);
});

test('store failure: closed refuses, open skips, local counts the divided limit', async () => {
  const broken: QuotaStore = {
    consume: () => Promise.reject(new Error('connection refused')),
    release: () => Promise.reject(new Error('connection refused')),
    renew: () => Promise.reject(new Error('connection refused')),
    close: async () => {},
  };
  const guard = new QuotaGuard({ store: broken, log: createLogger('silent'), expectedReplicas: 4 });
  const p = policyOf({
    user: { limit: 8, windowMs: 60_000, onStoreFailure: 'local' },
    global: { limit: 100, windowMs: 60_000, onStoreFailure: 'open' },
    concurrency: { perUser: false },
  });
  const dims = p.callerDimensions(who('cy'));
  const seen = [];
  for (let i = 0; i < 3; i++) seen.push(await guard.decide(dims));
  assert.deepEqual(
    seen.map((v) => v.allowed),
    [true, true, false],
    '8 / 4 replicas = 2 admitted locally',
  );
  const refused = seen[2]!;
  assert.ok(!refused.allowed && refused.refusal.kind === 'rate');
  assert.equal(refused.refusal.kind === 'rate' && refused.refusal.report.dimension.rate.limit, 2);

  const closed = policyOf({ tool: { limit: 5, windowMs: 1000, onStoreFailure: 'closed' } });
  const v = await guard.decide(closed.targetDimensions(who('cy'), 's', 't'));
  assert.ok(!v.allowed && v.refusal.kind === 'unavailable' && v.refusal.dimension === 'tool');
  assert.equal(guard.stats.storeAvailable, false);
  assert.ok(guard.stats.fallbackDecisions.local >= 3 && guard.stats.fallbackDecisions.closed === 1);
  await guard.close();
});
