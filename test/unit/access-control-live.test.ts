/**
 * AccessControl with policies replaced at run time: the gateway's and a tenant's policy both decide
 * (a tenant's narrows, never widens), argument constraints of both hold, views of an older generation
 * are told apart, and a server's tenant can be learnt after start.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AccessControl } from '../../core/policy/access-control.js';
import { validateConfig } from '../../shared/config/load.js';
import { policySchema, type PolicyConfig } from '../../shared/config/security-schema.js';
import type { Principal } from '../../shared/identity/principal.js';

const who = (tenant: string, roles: string[] = []): Principal => ({
  subject: 'u',
  tenant,
  roles,
  scopes: [],
  authMethod: 'api-key',
});
const policy = (doc: Record<string, unknown>): PolicyConfig => policySchema.unwrap().parse(doc);
const ac = () =>
  new AccessControl(
    validateConfig(
      { listen: { port: 0 }, servers: [{ name: 'crm', transport: 'stdio', command: 'true' }] },
      'test',
      {},
    ),
  );

test("a tenant's policy narrows the gateway's for its callers only", () => {
  const a = ac();
  a.setPolicies(
    policy({ default: 'allow', rules: [{ effect: 'deny', servers: ['crm'], tools: ['drop'] }] }),
    new Map([['acme', policy({ default: 'deny', rules: [{ servers: ['crm'], tools: ['read', 'drop'] }] })]]),
  );
  const acme = a.forPrincipal(who('acme'));
  const other = a.forPrincipal(who('bolt'));
  assert.equal(acme.itemVisible('tools', 'crm', 'read'), true);
  assert.equal(acme.itemVisible('tools', 'crm', 'write'), false, "acme's default deny");
  assert.equal(
    acme.itemVisible('tools', 'crm', 'drop'),
    false,
    "acme's allow does not beat the gateway's deny",
  );
  assert.equal(other.itemVisible('tools', 'crm', 'write'), true);
  assert.equal(other.itemVisible('tools', 'crm', 'drop'), false);
  assert.equal(acme.itemVisible('prompts', 'crm', 'p'), false, 'acme names no prompts: none');
  assert.equal(acme.serverVisible('crm'), true);
});

test('argument constraints: every policy that constrains a tool must be satisfied', () => {
  const a = ac();
  a.setPolicies(
    policy({
      default: 'allow',
      rules: [{ servers: ['crm'], tools: ['find'], arguments: { q: { maxLength: 5 } } }],
    }),
    new Map([
      [
        'acme',
        policy({
          default: 'allow',
          rules: [{ servers: ['crm'], tools: ['find'], arguments: { region: { enum: ['eu'] } } }],
        }),
      ],
    ]),
  );
  const acme = a.forPrincipal(who('acme'));
  assert.deepEqual(acme.checkArguments('crm', 'find', { q: 'abc', region: 'eu' }), []);
  assert.deepEqual(
    acme.checkArguments('crm', 'find', { q: 'abcdefgh', region: 'eu' }).map((v) => v.path),
    ['/q'],
  );
  assert.deepEqual(
    acme.checkArguments('crm', 'find', { q: 'abc', region: 'us' }).map((v) => v.path),
    ['/region'],
  );
  assert.deepEqual(a.forPrincipal(who('bolt')).checkArguments('crm', 'find', { q: 'abc', region: 'us' }), []);
});

test('a change makes a new generation: old views are stale, new ones decide by the new policies', () => {
  const a = ac();
  const before = a.forPrincipal(who('t'));
  assert.equal(before.itemVisible('tools', 'crm', 'x'), true, 'no policy: everything');
  assert.equal(before.filtersItems, false);
  a.setPolicies(policy({ default: 'deny', rules: [] }));
  assert.notEqual(before.generation, a.generation);
  const after = a.forPrincipal(who('t'));
  assert.equal(after.generation, a.generation);
  assert.equal(after.itemVisible('tools', 'crm', 'x'), false);
  assert.equal(after.serverVisible('crm'), false);
  a.setPolicies(undefined);
  assert.equal(a.forPrincipal(who('t')).itemVisible('tools', 'crm', 'x'), true, 'deleted: everything again');
});

test("a server's tenant learnt after start hides it from other tenants; a repeat changes nothing", () => {
  const a = ac();
  a.setServerTenant('acme-db', 'acme');
  const g = a.generation;
  a.setServerTenant('acme-db', 'acme');
  assert.equal(a.generation, g, 'same tenant: no new generation');
  assert.equal(a.forPrincipal(who('acme')).serverVisible('acme-db'), true);
  assert.equal(a.forPrincipal(who('bolt')).serverVisible('acme-db'), false);
  a.setServerTenant('acme-db', undefined, true);
  assert.equal(
    a.forPrincipal(who('bolt')).serverVisible('acme-db'),
    true,
    'forgotten: an unknown server is shared',
  );
});
