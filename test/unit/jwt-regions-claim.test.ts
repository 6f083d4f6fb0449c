/**
 * Data residency from the token: a JWT's `regions` claim (an array, or a space-separated string) becomes
 * the Principal's allowed regions, which the edge's placement intersects with the tenant's; a token
 * without it narrows nothing. Also: a JWT that could not be checked because the signing keys are
 * unreachable is marked unverifiable (not the caller's failure, so the source guard does not count it).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { configSchema } from '../../shared/config/schema.js';
import { JwtAuthenticator } from '../../edge/auth/jwt.js';
import { JwksServer, mint, signingKey, type SigningKey } from '../helpers/auth.js';

let jwks: JwksServer;
let key: SigningKey;
let auth: JwtAuthenticator;
const jwtConfig = (jwksUrl: string) =>
  configSchema.parse({
    auth: {
      mode: 'jwt',
      jwt: { issuer: 'https://issuer.test', audience: 'https://gateway.test/mcp', jwksUrl },
    },
  }).auth.jwt!;

before(async () => {
  key = await signingKey('k1', 'ES256');
  jwks = await new JwksServer().start();
  jwks.keys = [key];
  auth = new JwtAuthenticator(jwtConfig(jwks.url));
});
after(() => jwks.stop());

test('the regions claim narrows where the caller’s data may go', async () => {
  const of = async (claims: Record<string, unknown>) => {
    const r = await auth.verify(await mint(key, { sub: 'alice', tenant: 'acme', ...claims }));
    assert.ok(r.ok, JSON.stringify(r));
    return r.principal.allowedRegions;
  };
  assert.deepEqual(await of({ regions: ['eu-1', 'eu-2'] }), ['eu-1', 'eu-2']);
  assert.deepEqual(await of({ regions: 'eu-1 eu-2' }), ['eu-1', 'eu-2']);
  assert.deepEqual(await of({ regions: [] }), [], 'present but empty: no region at all');
  assert.equal(await of({}), undefined, 'absent: nothing narrowed');
});

test('signing keys that cannot be fetched make the token unverifiable, not invalid', async () => {
  const down = new JwtAuthenticator({ ...jwtConfig('http://127.0.0.1:1/jwks.json'), jwksTimeoutMs: 500 });
  const r = await down.verify(await mint(key, { sub: 'bob' }));
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.unverifiable, true, JSON.stringify(r));
  const bad = await auth.verify(`${await mint(key, { sub: 'bob' })}x`);
  assert.equal(!bad.ok && bad.unverifiable, undefined, 'a bad signature is the caller’s failure');
});
