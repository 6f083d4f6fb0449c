/**
 * Signing and verification keys from files: PKCS#8/SPKI PEM, a JWK, or a JWKS. Only EdDSA (Ed25519) and
 * ES256 (P-256) keys are accepted: both are fast to verify and neither has RSA's padding pitfalls. A key's
 * `kid` is its JWK `kid` when it has one, else its RFC 7638 thumbprint, so an edge and a core name the same
 * key the same way without coordinating.
 */
import { createHash, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

export type SigningAlg = 'EdDSA' | 'ES256';

export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
}

export interface VerificationKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
}

export class KeyFileError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'KeyFileError';
  }
}

export function algOf(key: KeyObject, file: string): SigningAlg {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new KeyFileError(
    file,
    `unsupported key type ${key.asymmetricKeyType ?? 'unknown'} (use Ed25519 or EC P-256)`,
  );
}

/** RFC 7638 thumbprint of a public key: the kid a key without one gets. */
export function thumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' }) as Record<string, string>;
  const members =
    jwk.kty === 'OKP'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
      : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new KeyFileError(file, `cannot read: ${(err as Error).message}`);
  }
}

function parseJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new KeyFileError(file, 'neither PEM nor JSON (JWK/JWKS)');
  }
}

/** The private key an edge signs with (or a core signs delegation tokens with). */
export function loadSigningKey(file: string, kidOverride?: string): SigningKey {
  const text = readText(file);
  let key: KeyObject;
  let kid: string | undefined = kidOverride;
  try {
    if (text.includes('-----BEGIN')) key = createPrivateKey(text);
    else {
      const jwk = parseJson(file, text) as JsonWebKey & { kid?: string };
      if (typeof jwk.d !== 'string') throw new KeyFileError(file, 'the JWK has no private part ("d")');
      key = createPrivateKey({ key: jwk, format: 'jwk' });
      kid ??= jwk.kid;
    }
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    throw new KeyFileError(file, `not a private key: ${(err as Error).message}`);
  }
  const alg = algOf(key, file);
  return { kid: kid ?? thumbprint(createPublicKey(key)), alg, key };
}

/** Public keys a core trusts: one per PEM or JWK file, every key of a JWKS file. */
export function loadVerificationKeys(file: string): VerificationKey[] {
  const text = readText(file);
  if (text.includes('-----BEGIN')) {
    let key: KeyObject;
    try {
      key = createPublicKey(text);
    } catch (err) {
      throw new KeyFileError(file, `not a public key: ${(err as Error).message}`);
    }
    return [{ kid: thumbprint(key), alg: algOf(key, file), key }];
  }
  const doc = parseJson(file, text) as { keys?: unknown[] } & JsonWebKey & { kid?: string };
  const jwks = Array.isArray(doc.keys) ? (doc.keys as (JsonWebKey & { kid?: string })[]) : [doc];
  return jwks.map((jwk) => verificationKeyFromJwk(jwk, file));
}

export function verificationKeyFromJwk(jwk: JsonWebKey & { kid?: string }, source: string): VerificationKey {
  let key: KeyObject;
  try {
    // Only the public members: a JWKS that carries a private key still yields only its public half.
    const { d: _d, ...pub } = jwk;
    key = createPublicKey({ key: pub, format: 'jwk' });
  } catch (err) {
    throw new KeyFileError(source, `not a public JWK: ${(err as Error).message}`);
  }
  return { kid: jwk.kid ?? thumbprint(key), alg: algOf(key, source), key };
}
