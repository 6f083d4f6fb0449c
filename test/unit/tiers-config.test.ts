/** Role-conditional configuration of the tiers: what `mcpgw config check` refuses, and the example pair. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../shared/config/load.js';
import { ROOT } from '../helpers/net.js';

function problems(doc: object): string[] {
  try {
    validateConfig(doc, 'test', {});
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
  return [];
}

const core = { region: 'eu', url: 'https://core-eu:9443' };

test('an edge needs cores and a signing key, and has no servers', () => {
  const p = problems({
    role: 'edge',
    servers: [{ name: 'x', transport: 'streamable-http', url: 'http://127.0.0.1:1/mcp' }],
  });
  assert.ok(
    p.some((m) => m.startsWith('cores: role edge needs at least one core')),
    p.join('\n'),
  );
  assert.ok(
    p.some((m) => m.startsWith('internal.signingKey:')),
    p.join('\n'),
  );
  assert.ok(
    p.some((m) => m.startsWith('servers: role edge has no backends')),
    p.join('\n'),
  );
  assert.deepEqual(problems({ role: 'edge', cores: [core], internal: { signingKey: 'k.pem' } }), []);
});

test('two cores with one id are refused (tokens could not tell them apart)', () => {
  const p = problems({
    role: 'edge',
    cores: [core, { ...core, url: 'https://other:9443' }],
    internal: { signingKey: 'k' },
  });
  assert.ok(
    p.some((m) => m.startsWith('cores.1.id:')),
    p.join('\n'),
  );
});

test('a core needs trusted edge keys, unless in the loopback test mode', () => {
  const p = problems({ role: 'core' });
  assert.ok(
    p.some((m) => m.startsWith('internal.trustedKeys: role core needs the public keys')),
    p.join('\n'),
  );
  assert.deepEqual(problems({ role: 'core', internal: { trustedKeys: ['edge.pub.pem'] } }), []);
  assert.deepEqual(problems({ role: 'core', internal: { jwksUrl: 'https://keys.example/jwks.json' } }), []);
  assert.deepEqual(problems({ role: 'core', internal: { insecureNoTrustOnLoopback: true } }), []);
  const off = problems({
    role: 'core',
    listen: { host: '0.0.0.0' },
    internal: { insecureNoTrustOnLoopback: true },
  });
  assert.ok(
    off.some((m) => m.startsWith('internal.insecureNoTrustOnLoopback: a test mode')),
    off.join('\n'),
  );
});

test('a core may listen beyond loopback (its callers prove themselves with internal tokens); an edge without auth may not', () => {
  assert.deepEqual(
    problems({ role: 'core', listen: { host: '0.0.0.0' }, internal: { trustedKeys: ['k'] } }),
    [],
  );
  const p = problems({
    role: 'edge',
    listen: { host: '0.0.0.0' },
    cores: [core],
    internal: { signingKey: 'k' },
  });
  assert.ok(
    p.some((m) => m.startsWith('auth.mode:')),
    p.join('\n'),
  );
});

test('cores and trusted keys belong to their roles; backend identity needs its key', () => {
  const p = problems({
    role: 'single',
    cores: [core],
    internal: { trustedKeys: ['k'] },
    servers: [
      { name: 'a', transport: 'streamable-http', url: 'http://127.0.0.1:1/mcp', identity: 'headers' },
      { name: 'b', transport: 'streamable-http', url: 'http://127.0.0.1:1/mcp', identity: 'delegation' },
      { name: 'c', transport: 'stdio', command: 'node', identity: 'headers' },
    ],
  });
  for (const want of [
    'cores: cores are for role edge',
    'internal.trustedKeys: trustedKeys are for role core',
    'servers.0.identity: identity "headers" needs backendIdentity.hmacKeyFile',
    'servers.1.identity: identity "delegation" needs backendIdentity.delegationKey',
    'servers.2.identity: identity is for HTTP servers',
  ])
    assert.ok(
      p.some((m) => m.startsWith(want)),
      `${want}\n in\n${p.join('\n')}`,
    );
});

test('internal tokens live at most 60 s; TLS 1.2 is the oldest version', () => {
  const p = problems({
    role: 'edge',
    cores: [core],
    internal: { signingKey: 'k', tokenTtlSeconds: 600 },
    listen: { tls: { cert: 'c', key: 'k', minVersion: 'TLSv1.1' } },
  });
  assert.ok(
    p.some((m) => m.startsWith('internal.tokenTtlSeconds:')),
    p.join('\n'),
  );
  assert.ok(
    p.some((m) => m.startsWith('listen.tls.minVersion:')),
    p.join('\n'),
  );
});

test('`mcpgw config check` accepts the deploy/local edge and core pair', () => {
  for (const f of ['deploy/local/edge.yaml', 'deploy/local/core.yaml']) {
    const out = execFileSync(
      process.execPath,
      [`${ROOT}dist/cli/main.js`, 'config', 'check', `${ROOT}${f}`],
      {
        encoding: 'utf8',
      },
    );
    assert.match(out, /: OK \(role (edge|core)/);
  }
});

test('`mcpgw config check` rejects an edge without cores, naming the problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cfg-'));
  const file = join(dir, 'edge.yaml');
  writeFileSync(file, 'role: edge\ninternal: { signingKey: k.pem }\n');
  let stderr = '';
  try {
    execFileSync(process.execPath, [`${ROOT}dist/cli/main.js`, 'config', 'check', file], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
  } catch (err) {
    stderr = String((err as { stderr?: string }).stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.match(stderr, /cores: role edge needs at least one core/);
});
