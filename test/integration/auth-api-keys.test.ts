/**
 * API keys as a user runs them: made with `mcpgw keys`, used as Bearer or X-API-Key through the SDK
 * client, and revoked or rotated while two gateway instances share one Redis: both refuse the old key
 * as soon as the revocation is announced. Also config-declared keys and combined modes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { RunningNode } from '../../cli/single.js';
import { RedisApiKeyStore } from '../../shared/adapters/redis/api-key-store.js';
import { generateApiKey } from '../../edge/auth/api-key.js';
import { MCP_HEADERS, raw, startGateway } from '../helpers/gateway.js';
import { connectWith, JwksServer, mint, secureServer, signingKey } from '../helpers/auth.js';
import { ROOT } from '../helpers/net.js';
import { changeOf } from '../contract/api-key-store.contract.js';

const runFile = promisify(execFile);
const CLI = `${ROOT}dist/cli/main.js`;
const REDIS_URL = process.env.MCPGW_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PEPPER = randomBytes(24).toString('base64url');
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'keys', version: '1' } },
};

async function mcpgw(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await runFile(process.execPath, [CLI, ...args], { cwd: ROOT });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const field = (out: string, name: string) => new RegExp(`^${name}: (\\S+)$`, 'm').exec(out)?.[1] ?? '';

describe('API keys shared by two gateways through Redis', () => {
  const keyPrefix = `mcpgw-test-akeys-${randomBytes(6).toString('hex')}`;
  const doc = {
    auth: { mode: 'api-key', requiredScopes: ['mcp:access'], apiKeys: { pepper: PEPPER, store: 'redis' } },
    redis: { url: REDIS_URL, keyPrefix },
  };
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-keys-'));
  const configFile = join(dir, 'mcpgw.json');
  const stores: RedisApiKeyStore[] = [];
  const gws: RunningNode[] = [];
  const initAt = (gw: RunningNode, headers: Record<string, string>) =>
    raw(`${gw.url}/mcp`, { headers: { ...MCP_HEADERS, ...headers }, body: INIT });

  before(async () => {
    writeFileSync(configFile, JSON.stringify({ ...doc, servers: [] }));
    for (let i = 0; i < 2; i++) {
      // Each edge has its own handle on the shared store, cache on, as in production.
      const store = new RedisApiKeyStore(REDIS_URL, { keyPrefix, cacheTtlMs: 60_000 });
      await store.whenSubscribed();
      stores.push(store);
      gws.push(await startGatewayWithKeys({ ...doc, servers: [secureServer('files')] }, store));
    }
  });
  after(async () => {
    await Promise.all(gws.map((g) => g.close()));
    await Promise.all(stores.map((s) => s.close()));
    const c = new Redis(REDIS_URL);
    await c.del(`${keyPrefix}:apikeys`);
    await c.quit();
  });

  test('create, use on both gateways (Bearer and X-API-Key), revoke: both refuse at once', async () => {
    const created = await mcpgw([
      'keys',
      'create',
      '--config',
      configFile,
      '--owner',
      'svc-reports',
      '--tenant',
      'acme',
      '--role',
      'reader',
      '--scope',
      'mcp:access',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const key = field(created.stdout, 'key');
    const id = field(created.stdout, 'id');
    assert.match(key, new RegExp(`^mcpgw_${id}_`));
    assert.match(field(created.stdout, 'hash'), /^hmac-sha256:/);

    for (const gw of gws) {
      const viaSdk = await connectWith(`${gw.url}/mcp`, { authorization: `Bearer ${key}` });
      assert.ok((await viaSdk.listTools()).tools.length > 0);
      await viaSdk.close();
      assert.equal((await initAt(gw, { 'x-api-key': key })).status, 200);
    }
    const listed = await mcpgw(['keys', 'list', '--config', configFile]);
    assert.match(
      listed.stdout,
      new RegExp(`^${id}\\tsvc-reports\\tacme\\troles=reader\\tscopes=mcp:access\\tactive`, 'm'),
    );
    assert.ok(!listed.stdout.includes(key.slice(-20)), 'list never shows a secret');

    const announced = stores.map((s) => changeOf(s, id));
    const revoked = await mcpgw(['keys', 'revoke', '--config', configFile, id]);
    assert.equal(revoked.code, 0, revoked.stderr);
    await Promise.all(announced);
    for (const gw of gws) {
      const r = await initAt(gw, { 'x-api-key': key });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate')!, /error="invalid_token".*revoked/);
    }
    assert.match(
      (await mcpgw(['keys', 'list', '--config', configFile])).stdout,
      new RegExp(`^${id}\\t.*\\trevoked`, 'm'),
    );
  });

  test('rotate: the new key works with the same grants, the old one is refused', async () => {
    const created = await mcpgw([
      'keys',
      'create',
      '--config',
      configFile,
      '--owner',
      'ci',
      '--scope',
      'mcp:access',
    ]);
    const oldKey = field(created.stdout, 'key');
    const oldId = field(created.stdout, 'id');
    assert.equal((await initAt(gws[1]!, { authorization: `Bearer ${oldKey}` })).status, 200);
    const announced = changeOf(stores[1]!, oldId);
    const rotated = await mcpgw(['keys', 'rotate', '--config', configFile, oldId]);
    assert.equal(rotated.code, 0, rotated.stderr);
    await announced;
    const newKey = field(rotated.stdout, 'key');
    assert.notEqual(newKey, oldKey);
    assert.equal((await initAt(gws[1]!, { authorization: `Bearer ${newKey}` })).status, 200);
    assert.equal((await initAt(gws[1]!, { authorization: `Bearer ${oldKey}` })).status, 401);
  });

  test('a wrong secret, an unknown id, a malformed key and an expired key are 401; no key is 401', async () => {
    const created = await mcpgw([
      'keys',
      'create',
      '--config',
      configFile,
      '--owner',
      'x',
      '--scope',
      'mcp:access',
    ]);
    const key = field(created.stdout, 'key');
    const wrong = key.slice(0, -4) + (key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const gw = gws[0]!;
    for (const k of [wrong, 'mcpgw_nosuchid00_' + 'A'.repeat(43), 'mcpgw_bad'])
      assert.equal((await initAt(gw, { 'x-api-key': k })).status, 401, k);
    const past = await mcpgw([
      'keys',
      'create',
      '--config',
      configFile,
      '--owner',
      'old',
      '--scope',
      'mcp:access',
      '--expires',
      '2020-01-01T00:00:00Z',
    ]);
    const r = await initAt(gw, { 'x-api-key': field(past.stdout, 'key') });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate')!, /expired/);
    const none = await initAt(gw, {});
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="mcpgw", scope="mcp:access"');
  });

  test('a key without a required scope is 403 insufficient_scope', async () => {
    const created = await mcpgw(['keys', 'create', '--config', configFile, '--owner', 'noscope']);
    const r = await initAt(gws[0]!, { 'x-api-key': field(created.stdout, 'key') });
    assert.equal(r.status, 403);
    assert.match(r.headers.get('www-authenticate')!, /error="insufficient_scope"/);
  });

  test('the CLI refuses bad input with a clear message', async () => {
    const noOwner = await mcpgw(['keys', 'create', '--config', configFile]);
    assert.equal(noOwner.code, 2);
    assert.match(noOwner.stderr, /--owner/);
    const unknown = await mcpgw(['keys', 'revoke', '--config', configFile, 'nosuchkey']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no API key with id nosuchkey/);
  });
});

describe('config-declared keys and combined modes', () => {
  const jwks = new JwksServer();
  let gw: RunningNode;
  const declared = generateApiKey(PEPPER);
  const initWith = (headers: Record<string, string>) =>
    raw(`${gw.url}/mcp`, { headers: { ...MCP_HEADERS, ...headers }, body: INIT });

  before(async () => {
    jwks.keys = [await signingKey('k1')];
    await jwks.start();
    gw = await startGateway({
      auth: {
        modes: ['jwt', 'api-key'],
        jwt: { issuer: 'https://issuer.test', audience: 'https://gateway.test/mcp', jwksUrl: jwks.url },
        apiKeys: {
          pepper: PEPPER,
          keys: [
            {
              id: declared.id,
              hash: declared.hash,
              owner: 'declared-svc',
              tenant: 'acme',
              roles: ['reader'],
            },
          ],
        },
      },
      servers: [secureServer('files')],
    });
  });
  after(async () => {
    await gw?.close();
    await jwks.stop();
  });

  test('a declared key works as Bearer and X-API-Key; a JWT works beside it', async () => {
    assert.equal((await initWith({ authorization: `Bearer ${declared.key}` })).status, 200);
    assert.equal((await initWith({ 'x-api-key': declared.key })).status, 200);
    const token = await mint(jwks.keys[0]!, { sub: 'alice' });
    assert.equal((await initWith({ authorization: `Bearer ${token}` })).status, 200);
  });

  test('a present but invalid credential is 401 whatever method it looks like; never anonymous', async () => {
    for (const headers of <Record<string, string>[]>[
      { authorization: 'Bearer not-a-jwt' },
      { authorization: `Bearer ${declared.key.slice(0, -2)}xx` },
      { 'x-api-key': 'garbage' },
      { authorization: `Bearer ${declared.key}`, 'x-api-key': declared.key },
    ]) {
      const r = await initWith(headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.match(r.headers.get('www-authenticate')!, /error="invalid_(token|request)"/);
    }
  });
});

describe('the key store down', () => {
  test('an API key that cannot be checked is a 401 (not a 500), without a hang', async () => {
    const { freePort } = await import('../helpers/net.js');
    const gw = await startGateway({
      auth: { mode: 'api-key', apiKeys: { pepper: PEPPER, store: 'redis' } },
      redis: { url: `redis://127.0.0.1:${await freePort()}`, keyPrefix: 'mcpgw-test-down' },
      servers: [secureServer('files')],
      // Blocking after 3 failures: an outage must not count as the callers' failures.
      security: { authFailures: { threshold: 3, windowMs: 60_000, blockMs: 60_000 } },
    });
    try {
      const started = Date.now();
      for (let i = 0; i < 5; i++) {
        const r = await raw(`${gw.url}/mcp`, {
          headers: { ...MCP_HEADERS, 'x-api-key': generateApiKey(PEPPER).key },
          body: INIT,
        });
        assert.equal(r.status, 401, `attempt ${i + 1}`);
        assert.match(r.headers.get('www-authenticate')!, /key store unavailable/);
      }
      assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
    } finally {
      await gw.close();
    }
  });
});

async function startGatewayWithKeys(
  doc: Record<string, unknown>,
  store: RedisApiKeyStore,
): Promise<RunningNode> {
  const { validateConfig } = await import('../../shared/config/load.js');
  const { createLogger } = await import('../../shared/log.js');
  const { startSingleNode } = await import('../../cli/single.js');
  const config = validateConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      log: { level: process.env.MCPGW_TEST_LOG ?? 'silent' },
      ...doc,
    },
    'test',
    {},
  );
  return startSingleNode(config, { log: createLogger(config.log.level), apiKeys: store });
}
