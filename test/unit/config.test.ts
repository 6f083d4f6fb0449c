import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../shared/config/load.js';

test('the issue example config is valid and gets defaults', () => {
  const cfg = validateConfig(
    {
      role: 'single',
      region: 'local',
      listen: { host: '127.0.0.1', port: 8080 },
      auth: { mode: 'none' },
      servers: [
        {
          name: 'everything',
          transport: 'stdio',
          command: 'node',
          args: ['server.js', 'stdio'],
          env: { SOME_KEY: 'value' },
        },
        {
          name: 'fixture',
          transport: 'streamable-http',
          url: 'http://127.0.0.1:9301/mcp',
          headers: { 'X-Api-Key': '...' },
        },
        { name: 'old', transport: 'sse', url: 'http://127.0.0.1:9302/sse' },
      ],
    },
    'example',
    {},
  );
  assert.equal(cfg.servers.length, 3);
  assert.equal(cfg.aggregate.pageSize, 100);
  assert.ok(Object.isFrozen(cfg.servers[0]));
});

test('every problem is reported at once, with its path', () => {
  try {
    validateConfig(
      {
        role: 'mystery',
        listen: { port: 'eighty' },
        extra: 1,
        servers: [
          { name: 'a__b', transport: 'stdio' },
          { name: 'x', transport: 'carrier-pigeon' },
        ],
      },
      'bad',
      {},
    );
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const paths = err.problems.map((p) => p.path);
    for (const p of ['role', 'listen.port', 'servers.0.name', 'servers.0.command', 'servers.1.transport'])
      assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
    assert.ok(
      err.problems.some((p) => /extra/.test(p.message)),
      'unknown keys are rejected',
    );
  }
});

test('duplicate server names are refused', () => {
  assert.throws(
    () =>
      validateConfig(
        {
          servers: [
            { name: 'a', transport: 'stdio', command: 'x' },
            { name: 'a', transport: 'stdio', command: 'y' },
          ],
        },
        'dup',
        {},
      ),
    /duplicate server name/,
  );
});

test('auth none is refused off loopback', () => {
  assert.throws(
    () => validateConfig({ listen: { host: '0.0.0.0' }, auth: { mode: 'none' } }, 'open', {}),
    /auth\.mode.*loopback/,
  );
  validateConfig({ listen: { host: '::1' } }, 'v6', {});
});

test('environment overrides and ${VAR} interpolation', () => {
  const cfg = validateConfig(
    {
      servers: [
        {
          name: 'h',
          transport: 'streamable-http',
          url: 'http://127.0.0.1:1/mcp',
          headers: { 'X-Api-Key': '${FIXTURE_KEY}' },
        },
      ],
    },
    'env',
    {
      MCPGW_LISTEN__PORT: '9123',
      MCPGW_LOG__LEVEL: 'debug',
      MCPGW_SESSIONS__IDLE_TIMEOUT_MS: '5000',
      FIXTURE_KEY: 's3cret',
    },
  );
  assert.equal(cfg.listen.port, 9123);
  assert.equal(cfg.log.level, 'debug');
  assert.equal(cfg.sessions.idleTimeoutMs, 5000);
  const h = cfg.servers[0];
  assert.ok(h && h.transport !== 'stdio' && h.headers['X-Api-Key'] === 's3cret');
  assert.throws(
    () =>
      validateConfig(
        {
          servers: [
            { name: 'h', transport: 'sse', url: 'http://127.0.0.1:1/sse', headers: { k: '${MISSING_VAR}' } },
          ],
        },
        'env',
        {},
      ),
    /MISSING_VAR is not set/,
  );
});

test('environment overrides reach array entries, and unrelated MCPGW_* variables are ignored', () => {
  const cfg = validateConfig(
    {
      servers: [
        { name: 'a', transport: 'streamable-http', url: 'http://127.0.0.1:1/mcp' },
        { name: 'b', transport: 'stdio', command: 'node', args: ['x.js'] },
      ],
    },
    'env',
    {
      MCPGW_SERVERS__0__URL: 'http://127.0.0.1:2/mcp',
      MCPGW_SERVERS__1__ARGS: '[y.js, stdio]',
      MCPGW_TEST_LOG: 'debug',
      MCPGW_SKIP_NPX_CONFORMANCE: '1',
    },
  );
  const [a, b] = cfg.servers;
  assert.ok(a && a.transport !== 'stdio' && a.url === 'http://127.0.0.1:2/mcp');
  assert.ok(b && b.transport === 'stdio');
  assert.deepEqual(b.args, ['y.js', 'stdio']);
  assert.equal(cfg.servers.length, 2);
});

test('lifecycle: drain delay and timeout default, come from the environment, and bad values are refused', () => {
  const base = { auth: { mode: 'none' } };
  const cfg = validateConfig(base, 'lifecycle', {});
  assert.deepEqual(cfg.lifecycle, { drainDelayMs: 0, drainTimeoutMs: 20_000 });
  const env = validateConfig(base, 'lifecycle', {
    MCPGW_LIFECYCLE__DRAIN_DELAY_MS: '5000',
    MCPGW_LIFECYCLE__DRAIN_TIMEOUT_MS: '45000',
  });
  assert.deepEqual(env.lifecycle, { drainDelayMs: 5_000, drainTimeoutMs: 45_000 });
  assert.throws(
    () =>
      validateConfig({ ...base, lifecycle: { drainDelayMs: -1, drainTimeoutMs: 2.5, grace: 1 } }, 'bad', {}),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const paths = err.problems.map((p) => p.path);
      for (const p of ['lifecycle.drainDelayMs', 'lifecycle.drainTimeoutMs'])
        assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
      assert.ok(
        err.problems.some((p) => /grace/.test(p.message)),
        'unknown keys are refused',
      );
      return true;
    },
  );
});
