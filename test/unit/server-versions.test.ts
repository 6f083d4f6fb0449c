/** Server versions: ids, the order of version labels, the default version, and the config's checks. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../shared/config/load.js';
import { compareVersions, defaultMember, serverId } from '../../shared/mcp/server-versions.js';

test('a versioned server runs as {name}-{version}; an unversioned one under its name', () => {
  assert.equal(serverId({ name: 'payments', version: 'v2' }), 'payments-v2');
  assert.equal(serverId({ name: 'payments' }), 'payments');
});

test('version labels order as people read them', () => {
  const sorted = ['v10', 'v2', 'v1', 'v2-rc1', 'v2-rc10', 'v2-rc2', '2024-06', '2023-12'].sort(
    compareVersions,
  );
  assert.deepEqual(sorted, ['2023-12', '2024-06', 'v1', 'v2-rc1', 'v2-rc2', 'v2-rc10', 'v2', 'v10']);
});

test('the default version: unversioned first, then the marked, then the highest; disabled never', () => {
  const v = (version: string, more: object = {}) => ({ name: 'p', version, ...more });
  assert.equal(defaultMember([v('v1'), v('v10'), v('v9')])?.version, 'v10');
  assert.equal(defaultMember([v('v1', { defaultVersion: true }), v('v3')])?.version, 'v1');
  assert.equal(
    defaultMember([v('v1', { defaultVersion: true }), v('v2', { defaultVersion: true }), v('v3')])?.version,
    'v2',
  );
  assert.equal(
    defaultMember<{ name: string; version?: string }>([v('v1'), { name: 'p' }])?.version,
    undefined,
  );
  assert.equal(defaultMember([v('v1'), v('v2', { enabled: false })])?.version, 'v1');
  assert.equal(defaultMember([v('v2', { enabled: false })]), undefined);
  // Order does not matter: every gateway picks the same one.
  assert.equal(defaultMember([v('v3'), v('v1'), v('v2')])?.version, 'v3');
});

const stdio = (more: object) => ({ transport: 'stdio', command: 'node', ...more });

test('config: versions of one name are fine; the same version twice, a bad label or two defaults are not', () => {
  const ok = validateConfig(
    {
      servers: [
        stdio({ name: 'payments', version: 'v1' }),
        stdio({ name: 'payments', version: 'v2', defaultVersion: true }),
      ],
    },
    'test',
    {},
  );
  assert.equal(ok.servers.length, 2);
  const problems = (doc: object) => {
    try {
      validateConfig(doc, 'test', {});
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => `${p.path}: ${p.message}`);
    }
    assert.fail('expected a ConfigError');
  };
  assert.deepEqual(
    problems({
      servers: [stdio({ name: 'payments', version: 'v1' }), stdio({ name: 'payments', version: 'v1' })],
    }),
    ['servers.1.name: duplicate server "payments-v1" (name "payments", version "v1")'],
  );
  assert.deepEqual(
    problems({ servers: [stdio({ name: 'payments-v1' }), stdio({ name: 'payments', version: 'v1' })] }),
    ['servers.1.name: duplicate server "payments-v1" (name "payments", version "v1")'],
  );
  assert.match(problems({ servers: [stdio({ name: 'p', version: 'v1.2' })] })[0]!, /^servers\.0\.version: /);
  assert.match(problems({ servers: [stdio({ name: 'p', version: 'v_1' })] })[0]!, /^servers\.0\.version: /);
  assert.deepEqual(problems({ servers: [stdio({ name: 'p', defaultVersion: true })] }), [
    'servers.0.defaultVersion: defaultVersion needs a version',
  ]);
  assert.deepEqual(
    problems({
      servers: [
        stdio({ name: 'p', version: 'v1', defaultVersion: true }),
        stdio({ name: 'p', version: 'v2', defaultVersion: true }),
      ],
    }),
    ['servers.1.defaultVersion: another version of "p" is the default already'],
  );
});
