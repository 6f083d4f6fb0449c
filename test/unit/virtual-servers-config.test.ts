/** The config's `virtualServers`: what loads, and every mistake named with its path. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../shared/config/load.js';

const servers = [
  { name: 'crm', transport: 'stdio', command: 'node' },
  { name: 'payments', version: 'v1', transport: 'stdio', command: 'node' },
];

function problems(virtualServers: unknown[]): string[] {
  try {
    validateConfig({ servers, virtualServers }, 'test', {});
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
  return [];
}

test('a virtual server may name servers by name or by id, with aliases', () => {
  const cfg = validateConfig(
    {
      servers,
      virtualServers: [
        {
          name: 'billing',
          tools: [
            { server: 'payments', tool: 'charge' },
            { server: 'payments-v1', tool: 'charge', alias: 'charge_v1' },
          ],
          prompts: [{ server: 'crm', prompt: 'summary' }],
          resources: [{ server: 'crm', uriTemplate: 'crm://contacts/{id}' }],
        },
      ],
    },
    'test',
    {},
  );
  assert.equal(cfg.virtualServers[0]?.tools.length, 2);
});

test('mistakes are reported with their path', () => {
  assert.deepEqual(problems([{ name: 'a', tools: [{ server: 'nosuch', tool: 'x' }] }]), [
    'virtualServers.0.tools.0.server: no server "nosuch" in servers',
  ]);
  assert.deepEqual(
    problems([
      {
        name: 'a',
        tools: [
          { server: 'crm', tool: 'lookup' },
          { server: 'payments', tool: 'lookup' },
        ],
      },
    ]),
    ['virtualServers.0.tools.1.alias: "lookup" is exposed twice in virtual server "a": give one an alias'],
  );
  assert.deepEqual(problems([{ name: 'a', tools: [{ server: 'crm', tool: 'has.dots' }] }]), [
    'virtualServers.0.tools.0.alias: tool "has.dots" is not a name every client accepts: give it an alias',
  ]);
  assert.deepEqual(problems([{ name: 'a', resources: [{ server: 'crm' }] }]), [
    'virtualServers.0.resources.0: exactly one of uri and uriTemplate',
  ]);
  assert.deepEqual(problems([{ name: 'a' }, { name: 'a' }]), [
    'virtualServers.1.name: duplicate virtual server "a"',
  ]);
  assert.match(problems([{ name: 'a__b' }])[0]!, /^virtualServers\.0\.name: /);
  assert.match(problems([{ name: 'a', tools: [{ server: 'crm', tool: 'x', extra: 1 }] }])[0]!, /extra/);
});
