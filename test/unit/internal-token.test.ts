/**
 * Internal tokens between tiers: what an edge mints (claims, header, lifetime, reuse) and what a core
 * accepts (trusted keys only, its own audience, unexpired, short-lived, typed), with keys from PEM, JWK and
 * JWKS files and rotation by rewriting them.
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { trace } from '@opentelemetry/api';
import { trustedParent } from '../../core/internal/trace-parent.js';
import { GatewayError } from '../../shared/errors.js';
import {
  InternalTokenSigner,
  InternalTokenVerifier,
  type InternalIdentity,
} from '../../shared/identity/internal-token.js';
import { loadSigningKey, loadVerificationKeys, thumbprint } from '../../shared/identity/keys.js';
import { principalKey, type Principal } from '../../shared/identity/principal.js';
import { signIdentityHeaders, verifyIdentityHeaders } from '../../shared/identity/backend-identity.js';

const quiet = { info: () => {}, error: () => {} };
const dir = mkdtempSync(join(tmpdir(), 'mcpgw-token-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function keyPair(type: 'ed25519' | 'p256' = 'ed25519') {
  const pair =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const priv = join(dir, `k${++n}.pem`);
  const pub = join(dir, `k${n}.pub.pem`);
  writeFileSync(priv, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  return { priv, pub, kid: thumbprint(pair.publicKey), pair };
}

const alice: Principal = Object.freeze({
  subject: 'alice',
  tenant: 'acme',
  roles: ['admin', 'dev'],
  scopes: ['tools:call'],
  clientApp: 'ide',
  allowedRegions: ['eu'],
  authMethod: 'jwt',
});

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof GatewayError, String(err));
    assert.equal(err.httpStatus, 401);
    return err.code;
  }
  assert.fail('expected a refusal');
}

describe('internal tokens', () => {
  test('an edge mints a short-lived EdDSA token with kid, typ and the principal; a core reads it back', async () => {
    const k = keyPair();
    const signer = new InternalTokenSigner({ keyFile: k.priv, issuer: 'edge-eu', region: 'eu', log: quiet });
    const verifier = new InternalTokenVerifier({
      audience: 'core-eu-1',
      trustedKeyFiles: [k.pub],
      log: quiet,
    });
    try {
      const token = await signer.tokenFor(alice, 'core-eu-1');
      const h = decodeProtectedHeader(token);
      assert.deepEqual(h, { alg: 'EdDSA', kid: k.kid, typ: 'mcpgw-internal+jwt' });
      const c = decodeJwt(token);
      assert.equal(c.iss, 'edge-eu');
      assert.equal(c.aud, 'core-eu-1');
      assert.equal(c.sub, 'alice');
      assert.ok(c.exp! - c.iat! <= 60);
      const id: InternalIdentity = await verifier.verify(`Bearer ${token}`);
      assert.equal(id.edge, 'edge-eu');
      assert.equal(id.region, 'eu');
      assert.deepEqual({ ...id.principal }, { ...alice });
      assert.equal(principalKey(id.principal), principalKey(alice));
    } finally {
      signer.close();
      verifier.close();
    }
  });

  test('one token per principal and audience, reused (not minted per request)', async () => {
    const k = keyPair();
    const signer = new InternalTokenSigner({ keyFile: k.priv, issuer: 'e', region: 'eu', log: quiet });
    try {
      const a = await signer.tokenFor(alice, 'core-1');
      assert.equal(await signer.tokenFor({ ...alice }, 'core-1'), a);
      assert.notEqual(await signer.tokenFor(alice, 'core-2'), a);
      assert.notEqual(await signer.tokenFor({ ...alice, roles: ['dev'] }, 'core-1'), a);
    } finally {
      signer.close();
    }
  });

  test("tokens name no trace (one per principal, traced or not); an older edge's signed trace id is read, a malformed one refused", async () => {
    const k = keyPair();
    const signer = new InternalTokenSigner({ keyFile: k.priv, issuer: 'e', region: 'eu', log: quiet });
    const verifier = new InternalTokenVerifier({ audience: 'core-1', trustedKeyFiles: [k.pub], log: quiet });
    try {
      const plain = await signer.tokenFor(alice, 'core-1');
      assert.equal(decodeJwt(plain).trc, undefined);
      assert.equal((await verifier.verify(`Bearer ${plain}`)).traceId, undefined);
      const now = Math.floor(Date.now() / 1000);
      const older = (trc: string) =>
        new SignJWT({ ten: 'acme', rol: [], scp: [], am: 'jwt', reg: 'eu', trc })
          .setProtectedHeader({ alg: 'EdDSA', kid: k.kid, typ: 'mcpgw-internal+jwt' })
          .setIssuer('e')
          .setSubject('alice')
          .setAudience('core-1')
          .setIssuedAt(now)
          .setExpirationTime(now + 30)
          .sign(k.pair.privateKey);
      const t1 = 'a'.repeat(32);
      assert.equal((await verifier.verify(`Bearer ${await older(t1)}`)).traceId, t1);
      assert.equal(await refusal(verifier.verify(`Bearer ${await older('x')}`)), 'GW_INTERNAL_TOKEN_INVALID');
    } finally {
      signer.close();
      verifier.close();
    }
  });

  test("the core's spans join the signed trace; a traceparent naming another trace is not followed", () => {
    const signed = 'c'.repeat(32);
    const spanOf = (ctx: ReturnType<typeof trustedParent>) => trace.getSpanContext(ctx!);
    const same = spanOf(trustedParent(`00-${signed}-${'1'.repeat(16)}-01`, signed));
    assert.deepEqual([same?.traceId, same?.spanId], [signed, '1'.repeat(16)]);
    const forged = spanOf(trustedParent(`00-${'d'.repeat(32)}-${'2'.repeat(16)}-01`, signed));
    assert.equal(forged?.traceId, signed);
    assert.notEqual(forged?.spanId, '2'.repeat(16));
    assert.equal(spanOf(trustedParent(undefined, signed))?.traceId, signed);
    // No trace signed in: the verified edge's header is taken as it is; nothing at all: no parent.
    assert.equal(
      spanOf(trustedParent(`00-${'d'.repeat(32)}-${'2'.repeat(16)}-01`, undefined))?.traceId,
      'd'.repeat(32),
    );
    assert.equal(trustedParent(undefined, undefined), undefined);
  });

  test('a reused token is renewed after half its lifetime', async () => {
    const k = keyPair();
    let now = Date.now();
    const signer = new InternalTokenSigner({
      keyFile: k.priv,
      issuer: 'e',
      region: 'eu',
      ttlSeconds: 30,
      log: quiet,
      now: () => now,
    });
    try {
      const a = await signer.tokenFor(alice, 'c');
      now += 14_000;
      assert.equal(await signer.tokenFor(alice, 'c'), a);
      now += 2_000;
      assert.notEqual(await signer.tokenFor(alice, 'c'), a);
    } finally {
      signer.close();
    }
  });

  test('ES256 keys, JWK and JWKS files', async () => {
    const k = keyPair('p256');
    const jwkPriv = join(dir, 'es.jwk.json');
    writeFileSync(
      jwkPriv,
      JSON.stringify({ ...k.pair.privateKey.export({ format: 'jwk' }), kid: 'edge-key-7' }),
    );
    const jwks = join(dir, 'trust.jwks.json');
    writeFileSync(
      jwks,
      JSON.stringify({ keys: [{ ...k.pair.publicKey.export({ format: 'jwk' }), kid: 'edge-key-7' }] }),
    );
    assert.equal(loadSigningKey(jwkPriv).kid, 'edge-key-7');
    assert.equal(loadVerificationKeys(jwks)[0]!.alg, 'ES256');
    const signer = new InternalTokenSigner({ keyFile: jwkPriv, issuer: 'e', region: 'eu', log: quiet });
    const verifier = new InternalTokenVerifier({ audience: 'c', trustedKeyFiles: [jwks], log: quiet });
    try {
      const token = await signer.tokenFor(alice, 'c');
      assert.deepEqual(decodeProtectedHeader(token), {
        alg: 'ES256',
        kid: 'edge-key-7',
        typ: 'mcpgw-internal+jwt',
      });
      assert.equal((await verifier.verify(`Bearer ${token}`)).principal.subject, 'alice');
    } finally {
      signer.close();
      verifier.close();
    }
  });

  test('RSA keys are refused with the file named', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const f = join(dir, 'rsa.pem');
    writeFileSync(f, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    assert.throws(() => loadSigningKey(f), /rsa\.pem: unsupported key type rsa/);
  });

  test('a core refuses: no token, expired, another audience, an untrusted key, a client token, a long-lived token', async () => {
    const k = keyPair();
    const stranger = keyPair();
    let now = Date.now();
    const verifier = new InternalTokenVerifier({
      audience: 'core-eu-1',
      trustedKeyFiles: [k.pub],
      log: quiet,
      now: () => now,
    });
    const mint = (o: { key?: typeof k; aud?: string; ttl?: number; typ?: string } = {}) => {
      const key = o.key ?? k;
      const iat = Math.floor(now / 1000);
      return new SignJWT({ ten: 'acme', rol: [], scp: [], am: 'jwt', reg: 'eu' })
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: o.typ ?? 'mcpgw-internal+jwt' })
        .setIssuer('edge')
        .setSubject('alice')
        .setAudience(o.aud ?? 'core-eu-1')
        .setIssuedAt(iat)
        .setExpirationTime(iat + (o.ttl ?? 30))
        .sign(key.pair.privateKey);
    };
    try {
      assert.equal(await refusal(verifier.verify(undefined)), 'GW_INTERNAL_TOKEN_MISSING');
      assert.equal(await refusal(verifier.verify('Basic dXNlcjpwYXNz')), 'GW_INTERNAL_TOKEN_INVALID');
      assert.equal(
        await refusal(verifier.verify(`Bearer ${await mint({ aud: 'core-us-1' })}`)),
        'GW_INTERNAL_TOKEN_AUDIENCE',
      );
      assert.equal(
        await refusal(verifier.verify(`Bearer ${await mint({ key: stranger })}`)),
        'GW_INTERNAL_TOKEN_INVALID',
      );
      assert.equal(
        await refusal(verifier.verify(`Bearer ${await mint({ typ: 'JWT' })}`)),
        'GW_INTERNAL_TOKEN_INVALID',
      );
      assert.equal(
        await refusal(verifier.verify(`Bearer ${await mint({ ttl: 3600 })}`)),
        'GW_INTERNAL_TOKEN_INVALID',
      );
      // A token a client might bring (an IdP's RS256 token, say) is refused without a second look.
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const idp = await new SignJWT({ scope: 'openid' })
        .setProtectedHeader({ alg: 'RS256', kid: 'idp' })
        .setSubject('alice')
        .setAudience('core-eu-1')
        .setExpirationTime('5m')
        .sign(rsa.privateKey);
      assert.equal(await refusal(verifier.verify(`Bearer ${idp}`)), 'GW_INTERNAL_TOKEN_INVALID');
      // Expiry applies to cached verifications too.
      const good = `Bearer ${await mint({ ttl: 20 })}`;
      assert.equal((await verifier.verify(good)).principal.subject, 'alice');
      now += 26_000;
      assert.equal(await refusal(verifier.verify(good)), 'GW_INTERNAL_TOKEN_EXPIRED');
    } finally {
      verifier.close();
    }
  });

  test('rotation by rewriting files: the edge switches keys, the core trusts both, then forgets the old one', async () => {
    const k1 = keyPair();
    const k2 = keyPair();
    const signingFile = join(dir, 'rotating.pem');
    const trustFile = join(dir, 'rotating.jwks.json');
    const writeTrust = (...keys: (typeof k1)[]) => {
      writeFileSync(
        `${trustFile}.tmp`,
        JSON.stringify({ keys: keys.map((k) => k.pair.publicKey.export({ format: 'jwk' })) }),
      );
      renameSync(`${trustFile}.tmp`, trustFile);
    };
    writeFileSync(signingFile, k1.pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeTrust(k1);
    const events = new EventEmitter();
    const signer = new InternalTokenSigner({
      keyFile: signingFile,
      issuer: 'e',
      region: 'eu',
      log: {
        info: (o: { kid?: string }, m?: string) =>
          void (m?.includes('switched') && events.emit('switched', o.kid)),
        error: () => void events.emit('signer-error'),
      },
    });
    const verifier = new InternalTokenVerifier({
      audience: 'c',
      trustedKeyFiles: [trustFile],
      log: {
        info: (o: { kids?: string[] }, m?: string) =>
          void (m?.includes('reloaded') && events.emit('trust', o.kids)),
        error: () => {},
      },
    });
    // File watches do not hold the process open (a server does); this test has no server.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      const old = await signer.tokenFor(alice, 'c');
      await verifier.verify(`Bearer ${old}`);
      let trusted = once(events, 'trust');
      writeTrust(k1, k2);
      assert.deepEqual((await trusted)[0], [k1.kid, k2.kid]);
      const switched = once(events, 'switched');
      writeFileSync(`${signingFile}.tmp`, k2.pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      renameSync(`${signingFile}.tmp`, signingFile);
      assert.deepEqual(await switched, [k2.kid]);
      const fresh = await signer.tokenFor(alice, 'c');
      assert.equal(decodeProtectedHeader(fresh).kid, k2.kid);
      // Overlap: both verify.
      await verifier.verify(`Bearer ${old}`);
      await verifier.verify(`Bearer ${fresh}`);
      trusted = once(events, 'trust');
      writeTrust(k2);
      assert.deepEqual((await trusted)[0], [k2.kid]);
      assert.equal(await refusal(verifier.verify(`Bearer ${old}`)), 'GW_INTERNAL_TOKEN_INVALID');
      await verifier.verify(`Bearer ${fresh}`);
      // A broken file keeps the current key (the edge goes on signing).
      const broken = once(events, 'signer-error');
      writeFileSync(signingFile, 'not a key');
      await broken;
      assert.equal(signer.kid, k2.kid);
      assert.equal(
        decodeProtectedHeader(await signer.tokenFor({ ...alice, subject: 'bob' }, 'c')).kid,
        k2.kid,
      );
    } finally {
      clearInterval(keepAlive);
      signer.close();
      verifier.close();
    }
  });
});

describe('backend identity headers', () => {
  const key = Buffer.from('0123456789abcdef0123456789abcdef');
  const who = { user: 'alice@example.com', tenant: 'acme', roles: ['admin', 'a,b'] };
  const t = Math.floor(Date.now() / 1000);

  test('a backend verifies what the core signed for it', () => {
    const h = signIdentityHeaders(key, 'notes', who, t);
    assert.deepEqual(verifyIdentityHeaders(h, { key, server: 'notes' }), who);
  });

  test('forged, replayed at another server, stale or signed with another key: refused', () => {
    const h = signIdentityHeaders(key, 'notes', who, t);
    assert.equal(
      verifyIdentityHeaders({ ...h, 'x-mcpgw-roles': 'root' }, { key, server: 'notes' }),
      undefined,
    );
    assert.equal(verifyIdentityHeaders(h, { key, server: 'billing' }), undefined);
    assert.equal(verifyIdentityHeaders(h, { key, server: 'notes', now: (t + 600) * 1000 }), undefined);
    assert.equal(verifyIdentityHeaders(h, { key: Buffer.from('x'.repeat(32)), server: 'notes' }), undefined);
    assert.equal(verifyIdentityHeaders({}, { key, server: 'notes' }), undefined);
  });

  test('the public key of a PEM file gets the RFC 7638 thumbprint as its kid', () => {
    const k = keyPair();
    assert.equal(
      loadVerificationKeys(k.pub)[0]!.kid,
      thumbprint(createPublicKey(readFileSync(k.pub, 'utf8'))),
    );
    assert.equal(loadSigningKey(k.priv).kid, k.kid);
  });
});
