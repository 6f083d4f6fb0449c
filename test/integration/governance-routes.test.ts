/**
 * The governance admin routes mounted on a Fastify instance: held tools, approval with the reviewed
 * hash, lifecycle transitions (allowed and refused), and clear 400s for bad bodies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { MemoryApprovalStore } from '../../shared/adapters/memory/approval-store.js';
import { MemoryRegistryStore } from '../../shared/adapters/memory/registry-store.js';
import { runtimeServerSchema, configSchema } from '../../shared/config/schema.js';
import { createLogger } from '../../shared/log.js';
import { ANONYMOUS } from '../../shared/identity/principal.js';
import { ToolGovernance } from '../../core/governance/tool-governance.js';
import { definitionHash } from '../../core/governance/pinning.js';
import { governanceRoutes } from '../../core/admin/governance-routes.js';

test('governance routes: approve what is held, transition lifecycles, refuse bad input', async () => {
  const registry = new MemoryRegistryStore();
  const approvals = new MemoryApprovalStore();
  const changed: string[] = [];
  const governance = new ToolGovernance({
    config: configSchema.parse({}).governance,
    approvals,
    log: createLogger('silent'),
    onApprovalChange: (s) => changed.push(s),
  });
  const server = runtimeServerSchema.parse({
    name: 'pay',
    transport: 'stdio',
    command: 'x',
    pinning: 'block',
  });
  await registry.upsert(server, 'config');
  const caller = { identity: ANONYMOUS, previewOptIn: false };
  const v1 = { name: 'send', description: 'Sends', inputSchema: { type: 'object' } };
  const v2 = { ...v1, description: 'Sends everything' };
  assert.equal((await governance.list(server, [v1], caller)).length, 1);
  assert.equal((await governance.list(server, [v2], caller)).length, 0);

  const app = Fastify();
  await app.register(governanceRoutes, { prefix: '/admin', governance, registry, actorOf: () => 'alice' });
  const held = (await app.inject({ method: 'GET', url: '/admin/governance/held?server=pay' })).json();
  assert.equal(held.held[0].currentHash, definitionHash(v2));

  const stale = await app.inject({
    method: 'POST',
    url: '/admin/governance/approvals',
    payload: { server: 'pay', tool: 'send', expectedHash: definitionHash(v1) },
  });
  assert.equal(stale.statusCode, 400);
  assert.match(stale.json().message, /changed again/);
  const ok = await app.inject({
    method: 'POST',
    url: '/admin/governance/approvals',
    payload: { server: 'pay', tool: 'send', expectedHash: definitionHash(v2) },
  });
  assert.equal(ok.statusCode, 201);
  assert.equal(ok.json().approvedBy, 'alice');
  assert.deepEqual(changed, ['pay']);
  assert.equal((await governance.list(server, [v2], caller))[0]?.description, 'Sends everything');

  const retire = await app.inject({
    method: 'POST',
    url: '/admin/governance/lifecycle',
    payload: { server: 'pay', tool: 'send', to: 'deprecated' },
  });
  assert.equal(retire.statusCode, 200);
  assert.equal(retire.json().updatedBy, 'alice');
  const back = await app.inject({
    method: 'POST',
    url: '/admin/governance/lifecycle',
    payload: { server: 'pay', to: 'draft' },
  });
  assert.equal(back.statusCode, 409);
  assert.equal(back.json().code, 'GW_LIFECYCLE_TRANSITION');
  const bad = await app.inject({
    method: 'POST',
    url: '/admin/governance/lifecycle',
    payload: { server: 'pay', to: 'gone' },
  });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.json().message, /"to" must be one of draft, preview/);
  const none = await app.inject({
    method: 'POST',
    url: '/admin/governance/lifecycle',
    payload: { server: 'nope', to: 'active' },
  });
  assert.equal(none.statusCode, 404);
  await app.close();
});
