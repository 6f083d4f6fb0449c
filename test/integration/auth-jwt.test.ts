/**
 * The gateway as an OAuth 2.1 resource server: tokens verified against a JWKS served by the test, and
 * every attack refused with 401 (or 403 for a missing scope) and a challenge naming the metadata.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { RunningNode } from '../../cli/single.js';
import { MCP_HEADERS, raw, startGateway } from '../helpers/gateway.js';
import {
  b64url,
  connectWith,
  JwksServer,
  mint,
  secureServer,
  signingKey,
  type SigningKey,
} from '../helpers/auth.js';
import { freePort } from '../helpers/net.js';

const ISSUER = 'https://issuer.test';
const AUDIENCE = 'https://gateway.test/mcp';
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'attack', version: '1' } },
};
const GOOD_CLAIMS = { sub: 'alice', scope: 'mcp:access tools', tenant: 'acme', roles: ['dev'] };

function jwtConfig(jwksUrl: string, extra: Record<string, unknown> = {}) {
  return {
    auth: {
      mode: 'jwt',
      requiredScopes: ['mcp:access'],
      jwt: {
        issuer: ISSUER,
        audience: AUDIENCE,
        jwksUrl,
        clockSkewSec: 5,
        jwksCooldownMs: 0,
        jwksTimeoutMs: 500,
        ...extra,
      },
    },
    servers: [secureServer('files')],
  };
}

describe('JWT authentication', () => {
  const jwks = new JwksServer();
  let key: SigningKey;
  let gw: RunningNode;
  let mcp: string;
  const initWith = (token?: string, url = mcp) =>
    raw(url, {
      headers: { ...MCP_HEADERS, ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) },
      body: INIT,
    });
  const assertRefused = (r: Awaited<ReturnType<typeof raw>>, status: number, error?: string) => {
    assert.equal(r.status, status, r.text);
    const challenge = r.headers.get('www-authenticate') ?? '';
    assert.match(challenge, /^Bearer /);
    assert.ok(
      challenge.includes(`resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp"`),
      challenge,
    );
    assert.ok(challenge.includes('scope="mcp:access"'), challenge);
    if (error) assert.ok(challenge.includes(`error="${error}"`), challenge);
    else assert.ok(!challenge.includes('error='), challenge);
    assert.equal(
      r.json.error.data.code,
      status === 403 ? 'GW_INSUFFICIENT_SCOPE' : error ? 'GW_INVALID_TOKEN' : 'GW_UNAUTHENTICATED',
    );
  };

  before(async () => {
    key = await signingKey('k1');
    jwks.keys = [key];
    await jwks.start();
    gw = await startGateway(jwtConfig(jwks.url));
    mcp = `${gw.url}/mcp`;
  });
  after(async () => {
    await gw?.close();
    await jwks.stop();
  });

  test('a valid token gets a session; the SDK client works with it', async () => {
    const token = await mint(key, GOOD_CLAIMS);
    assert.equal((await initWith(token)).status, 200);
    const client = await connectWith(mcp, { authorization: `Bearer ${token}` });
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === 'files__echo'));
    await client.close();
  });

  test('no credential: 401 with the resource metadata and scope, no error code', async () => {
    assertRefused(await initWith(), 401);
  });

  test('alg "none" is refused', async () => {
    const header = b64url(JSON.stringify({ alg: 'none', typ: 'JWT', kid: 'k1' }));
    const now = Math.floor(Date.now() / 1000);
    const payload = b64url(JSON.stringify({ ...GOOD_CLAIMS, iss: ISSUER, aud: AUDIENCE, exp: now + 300 }));
    assertRefused(await initWith(`${header}.${payload}.`), 401, 'invalid_token');
  });

  test('HS256 signed with the RSA public key as the secret is refused', async () => {
    const { createPublicKey } = await import('node:crypto');
    const pem = createPublicKey({ key: key.publicJwk as any, format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    });
    const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'k1' }));
    const now = Math.floor(Date.now() / 1000);
    const payload = b64url(JSON.stringify({ ...GOOD_CLAIMS, iss: ISSUER, aud: AUDIENCE, exp: now + 300 }));
    const sig = createHmac('sha256', pem).update(`${header}.${payload}`).digest('base64url');
    assertRefused(await initWith(`${header}.${payload}.${sig}`), 401, 'invalid_token');
  });

  test('expired (beyond the skew) and not-yet-valid tokens are refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await initWith(await mint(key, GOOD_CLAIMS, { expiresIn: now - 60 }));
    assertRefused(expired, 401, 'invalid_token');
    assert.match(expired.headers.get('www-authenticate')!, /expired/);
    const early = await initWith(await mint(key, GOOD_CLAIMS, { notBefore: now + 120 }));
    assertRefused(early, 401, 'invalid_token');
    assert.match(early.headers.get('www-authenticate')!, /not valid yet/);
    // Within the skew: accepted.
    assert.equal((await initWith(await mint(key, GOOD_CLAIMS, { notBefore: now + 2 }))).status, 200);
  });

  test('wrong issuer and wrong audience are refused', async () => {
    assertRefused(
      await initWith(await mint(key, GOOD_CLAIMS, { issuer: 'https://evil.test' })),
      401,
      'invalid_token',
    );
    assertRefused(
      await initWith(await mint(key, GOOD_CLAIMS, { audience: 'https://other-resource.test' })),
      401,
      'invalid_token',
    );
  });

  test('a tampered payload is refused', async () => {
    const [h, , s] = (await mint(key, GOOD_CLAIMS)).split('.');
    const now = Math.floor(Date.now() / 1000);
    const forged = b64url(
      JSON.stringify({ ...GOOD_CLAIMS, sub: 'root', iss: ISSUER, aud: AUDIENCE, exp: now + 300 }),
    );
    assertRefused(await initWith(`${h}.${forged}.${s}`), 401, 'invalid_token');
  });

  test('an unknown kid is refused; after a key rotation the refetched JWKS accepts the new key', async () => {
    const next = await signingKey('k2', 'ES256');
    const token = await mint(next, GOOD_CLAIMS);
    const refused = await initWith(token);
    assertRefused(refused, 401, 'invalid_token');
    assert.match(refused.headers.get('www-authenticate')!, /unknown key/);
    jwks.keys = [key, next];
    const before = jwks.fetches;
    assert.equal((await initWith(token)).status, 200);
    assert.equal(jwks.fetches, before + 1, 'the unknown kid triggered exactly one refetch');
  });

  test('a missing scope is 403 insufficient_scope', async () => {
    assertRefused(
      await initWith(await mint(key, { ...GOOD_CLAIMS, scope: 'tools' })),
      403,
      'insufficient_scope',
    );
  });

  test('a token in the query string is ignored (401 as if absent)', async () => {
    const token = await mint(key, GOOD_CLAIMS);
    assertRefused(await raw(`${mcp}?access_token=${token}`, { headers: MCP_HEADERS, body: INIT }), 401);
  });

  test('a malformed Authorization header is 401 invalid_request', async () => {
    const r = await raw(mcp, {
      headers: { ...MCP_HEADERS, authorization: 'Basic YWxpY2U6c2VjcmV0' },
      body: INIT,
    });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate')!, /error="invalid_request"/);
  });

  test('every MCP transport is guarded; health, readiness and metadata are open', async () => {
    for (const [path, method] of [
      ['/servers/files/mcp', 'POST'],
      ['/sse', 'GET'],
      ['/message?sessionId=x', 'POST'],
    ] as const) {
      const r = await raw(`${gw.url}${path}`, {
        method,
        headers: { ...MCP_HEADERS, accept: 'application/json, text/event-stream' },
        ...(method === 'POST' ? { body: INIT } : {}),
      });
      assert.equal(r.status, 401, path);
    }
    const scoped = await raw(`${gw.url}/servers/files/mcp`, { headers: MCP_HEADERS, body: INIT });
    assert.match(
      scoped.headers.get('www-authenticate')!,
      new RegExp(`resource_metadata="${gw.url}/.well-known/oauth-protected-resource/servers/files/mcp"`),
    );
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
    assert.notEqual((await fetch(`${gw.url}/readyz`)).status, 401);
    const meta: any = await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json();
    assert.deepEqual(meta.resource, `${gw.url}/mcp`);
    assert.deepEqual(meta.authorization_servers, [ISSUER]);
    assert.deepEqual(meta.bearer_methods_supported, ['header']);
    assert.deepEqual(meta.scopes_supported, ['mcp:access']);
    const root: any = await (await fetch(`${gw.url}/.well-known/oauth-protected-resource`)).json();
    assert.equal(root.resource, gw.url);
  });

  test('the session is bound to its principal: another subject gets 404 with the same session id', async () => {
    const alice = await mint(key, GOOD_CLAIMS);
    const bob = await mint(key, { ...GOOD_CLAIMS, sub: 'bob' });
    const init = await initWith(alice);
    const sid = init.headers.get('mcp-session-id')!;
    const list = (token: string) =>
      raw(mcp, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': sid },
        body: { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      });
    assert.equal((await list(alice)).status, 200);
    const stolen = await list(bob);
    assert.equal(stolen.status, 404);
    assert.equal(stolen.json.error.data.code, 'GW_SESSION_NOT_FOUND');
    // The same subject in another tenant is another principal too.
    assert.equal((await list(await mint(key, { ...GOOD_CLAIMS, tenant: 'other' }))).status, 404);
  });
});

describe('JWT with Host-header routing', () => {
  test('the challenge names the metadata of the URL the client called, and that metadata names it', async () => {
    const jwks = await new JwksServer().start();
    jwks.keys = [await signingKey('k1')];
    const gw = await startGateway({
      ...jwtConfig(jwks.url),
      http: { hostRouting: { pattern: '{service}-mcp.example.test' } },
    });
    try {
      const { request } = await import('node:http');
      const get = (path: string, method = 'GET') =>
        new Promise<{ status: number; headers: any; body: string }>((resolve, reject) => {
          const req = request(
            `${gw.url}${path}`,
            { method, headers: { ...MCP_HEADERS, host: 'files-mcp.example.test' } },
            (res) => {
              let body = '';
              res.on('data', (d) => (body += d));
              res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
            },
          );
          req.on('error', reject);
          req.end(method === 'POST' ? JSON.stringify(INIT) : undefined);
        });
      const refused = await get('/mcp', 'POST');
      assert.equal(refused.status, 401);
      const url = /resource_metadata="([^"]+)"/.exec(refused.headers['www-authenticate'])![1]!;
      assert.equal(url, 'http://files-mcp.example.test/.well-known/oauth-protected-resource/mcp');
      const meta = JSON.parse((await get(new URL(url).pathname)).body);
      assert.equal(meta.resource, 'http://files-mcp.example.test/mcp');
    } finally {
      await gw.close();
      await jwks.stop();
    }
  });
});

describe('JWKS trouble', () => {
  test('JWKS endpoint down: 401 (not 500), at once', async () => {
    const key = await signingKey('k1');
    const gw = await startGateway(jwtConfig(`http://127.0.0.1:${await freePort()}/jwks.json`));
    try {
      const started = Date.now();
      const r = await raw(`${gw.url}/mcp`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${await mint(key, GOOD_CLAIMS)}` },
        body: INIT,
      });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate')!, /error="invalid_token"/);
      assert.ok(Date.now() - started < 2000);
    } finally {
      await gw.close();
    }
  });

  test('a JWKS endpoint that never answers: 401 after jwksTimeoutMs, no hang', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const silent: Server = createServer(() => {}).on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const key = await signingKey('k1');
    const gw = await startGateway(jwtConfig(`http://127.0.0.1:${port}/jwks.json`, { jwksTimeoutMs: 300 }));
    try {
      const started = Date.now();
      const r = await raw(`${gw.url}/mcp`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${await mint(key, GOOD_CLAIMS)}` },
        body: INIT,
      });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate')!, /in time/);
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    } finally {
      await gw.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('unknown kids do not make the gateway hammer the issuer (cooldown)', async () => {
    const jwks = await new JwksServer().start();
    const key = await signingKey('k1');
    jwks.keys = [key];
    const gw = await startGateway(jwtConfig(jwks.url, { jwksCooldownMs: 60_000 }));
    try {
      const ok = await raw(`${gw.url}/mcp`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${await mint(key, GOOD_CLAIMS)}` },
        body: INIT,
      });
      assert.equal(ok.status, 200);
      const fetched = jwks.fetches;
      for (let i = 0; i < 5; i++) {
        const stranger = await signingKey(`unknown-${i}`);
        const r = await raw(`${gw.url}/mcp`, {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${await mint(stranger, GOOD_CLAIMS)}` },
          body: INIT,
        });
        assert.equal(r.status, 401);
      }
      assert.equal(jwks.fetches, fetched, 'no refetch within the cooldown');
    } finally {
      await gw.close();
      await jwks.stop();
    }
  });
});
