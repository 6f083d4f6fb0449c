/**
 * The signed identity between tiers. An edge that authenticated a caller mints a short-lived JWT
 * (EdDSA or ES256, `kid` in the header, `typ: mcpgw-internal+jwt`, exp <= 60 s, aud = the core's id,
 * iss = the edge) carrying the Principal; the core accepts nothing else. A client's own token is never
 * forwarded: it has the wrong `typ`, and no edge key signs it.
 *
 * Tokens are minted once per principal and audience and reused for half their lifetime, and a core
 * caches what it verified until expiry: neither side pays for a signature per request, traced or not
 * (the trace context travels in the W3C `traceparent` header of the same authenticated request; earlier
 * edges signed the trace id in, claim `trc`, which a core still reads and follows). Keys come from files that
 * are watched: an edge switches to a rewritten signing key at once; a core trusts every key in its files
 * (old and new during a rotation) and forgets cached verifications when a key leaves them.
 */
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { randomBytes } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { watchFiles, type FileWatch } from '../files/watch.js';
import type { AuthMethod, Principal } from './principal.js';
import { loadSigningKey, loadVerificationKeys, type SigningKey, type VerificationKey } from './keys.js';

export const INTERNAL_TOKEN_TYP = 'mcpgw-internal+jwt';
/** The longest lifetime a core accepts, whatever a (trusted) edge put in the token. */
export const MAX_INTERNAL_TOKEN_SECONDS = 60;
const CLOCK_TOLERANCE_SECONDS = 5;
const CACHE_LIMIT = 10_000;

type KeyLog = { info(o: object, m?: string): void; error(o: object, m?: string): void };

/** The claims beyond the registered ones; short names keep the header that carries them small. */
interface PrincipalClaims {
  ten: string;
  rol: readonly string[];
  scp: readonly string[];
  am: AuthMethod;
  app?: string;
  ar?: readonly string[];
  /** The region of the edge that authenticated the caller. */
  reg: string;
  /** A W3C trace id (signed in by older edges, one token per trace; no longer minted). */
  trc?: string;
}

const TRACE_ID = /^(?!0{32})[0-9a-f]{32}$/;

export interface InternalIdentity {
  readonly principal: Principal;
  /** The edge that signed (the token's `iss`). */
  readonly edge: string;
  /** The region of that edge. */
  readonly region: string;
  /** Expiry, epoch ms. */
  readonly expiresAt: number;
  /** The trace an older edge signed in: the core's spans belong to it, whatever the header says. */
  readonly traceId?: string;
}

export interface SignerOptions {
  keyFile: string;
  kid?: string;
  /** The edge's id: `iss`. */
  issuer: string;
  region: string;
  ttlSeconds?: number;
  log: KeyLog;
  now?: () => number;
}

/** The edge side: mints (and reuses) internal tokens with the current signing key. */
export class InternalTokenSigner {
  private key: SigningKey;
  private readonly ttl: number;
  private readonly cache = new Map<string, { token: string; renewAt: number }>();
  /** Tokens being signed, per cache key. */
  private readonly minting = new Map<string, Promise<string>>();
  private readonly watch: FileWatch;
  private readonly now: () => number;

  constructor(private readonly o: SignerOptions) {
    this.ttl = Math.min(o.ttlSeconds ?? MAX_INTERNAL_TOKEN_SECONDS, MAX_INTERNAL_TOKEN_SECONDS);
    this.now = o.now ?? Date.now;
    this.key = loadSigningKey(o.keyFile, o.kid);
    o.log.info({ kid: this.key.kid, alg: this.key.alg }, 'internal signing key loaded');
    this.watch = watchFiles([o.keyFile], () => this.reload());
  }

  get kid(): string {
    return this.key.kid;
  }

  /**
   * A token for `principal` addressed to core `audience`, cached for half its lifetime. It names no
   * trace: a token per trace cost a signature (and a core a verification) per request.
   */
  async tokenFor(principal: Principal, audience: string): Promise<string> {
    return this.cachedToken(principal, audience) ?? this.renew(principal, audience);
  }

  /** The cached token for `principal` and `audience` while it need not be renewed; else undefined. */
  cachedToken(principal: Principal, audience: string): string | undefined {
    const hit = this.cache.get(cacheKey(principal, audience));
    return hit && hit.renewAt > this.now() ? hit.token : undefined;
  }

  private renew(principal: Principal, audience: string): Promise<string> {
    const k = cacheKey(principal, audience);
    const now = this.now();
    // Concurrent calls for the same principal share one signature (and the core then verifies one token).
    const pending = this.minting.get(k);
    if (pending) return pending;
    const key = this.key;
    const minted: Promise<string> = this.mint(principal, audience, key).then(
      (token) => {
        if (this.minting.get(k) === minted) this.minting.delete(k);
        // A key switched while signing: this token is already outdated, do not keep it.
        if (key === this.key) {
          if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
          this.cache.set(k, { token, renewAt: now + (this.ttl * 1000) / 2 });
        }
        return token;
      },
      (err: unknown) => {
        if (this.minting.get(k) === minted) this.minting.delete(k);
        throw err;
      },
    );
    this.minting.set(k, minted);
    return minted;
  }

  /** Forgets the cached tokens, e.g. after a core refused one. */
  forget(): void {
    this.cache.clear();
    this.minting.clear();
  }

  close(): void {
    this.watch.close();
  }

  private mint(p: Principal, audience: string, key: SigningKey): Promise<string> {
    const claims: PrincipalClaims = {
      ten: p.tenant,
      rol: p.roles,
      scp: p.scopes,
      am: p.authMethod,
      reg: this.o.region,
      ...(p.clientApp !== undefined && { app: p.clientApp }),
      ...(p.allowedRegions !== undefined && { ar: p.allowedRegions }),
    };
    const iat = Math.floor(this.now() / 1000);
    return new SignJWT(claims as unknown as JWTPayload)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: INTERNAL_TOKEN_TYP })
      .setIssuer(this.o.issuer)
      .setAudience(audience)
      .setSubject(p.subject)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.ttl)
      .setJti(randomBytes(9).toString('base64url'))
      .sign(key.key);
  }

  private reload(): void {
    try {
      const next = loadSigningKey(this.o.keyFile, this.o.kid);
      if (next.kid === this.key.kid && next.alg === this.key.alg) {
        this.key = next;
        return;
      }
      this.key = next;
      this.cache.clear();
      this.o.log.info({ kid: next.kid, alg: next.alg }, 'internal signing key switched');
    } catch (err) {
      // A half-written or broken file must not stop the edge: it keeps signing with the key it has.
      this.o.log.error(
        { err: (err as Error).message },
        'internal signing key not reloaded; keeping the current key',
      );
    }
  }
}

export interface VerifierOptions {
  /** The core's id: the only `aud` accepted. */
  audience: string;
  trustedKeyFiles: readonly string[];
  jwksUrl?: string;
  log: KeyLog;
  now?: () => number;
}

/** The core side: accepts only tokens of trusted edges, for this core, unexpired. */
export class InternalTokenVerifier {
  private keys = new Map<string, VerificationKey>();
  private readonly remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  private readonly cache = new Map<string, InternalIdentity>();
  private readonly watch: FileWatch | undefined;
  private readonly now: () => number;

  constructor(private readonly o: VerifierOptions) {
    this.now = o.now ?? Date.now;
    this.keys = this.readKeys();
    o.log.info({ kids: [...this.keys.keys()] }, 'trusted edge keys loaded');
    this.remote = o.jwksUrl ? createRemoteJWKSet(new URL(o.jwksUrl), { cacheMaxAge: 60_000 }) : undefined;
    if (o.trustedKeyFiles.length > 0) this.watch = watchFiles(o.trustedKeyFiles, () => this.reload());
  }

  get trustedKids(): string[] {
    return [...this.keys.keys()];
  }

  /** The identity a request's `Authorization: Bearer` carries; throws GatewayError (401 codes). */
  async verify(authorization: string | undefined): Promise<InternalIdentity> {
    const token = bearer(authorization);
    const hit = this.cache.get(token);
    if (hit) {
      if (hit.expiresAt > this.now()) return hit;
      this.cache.delete(token);
    }
    const identity = await this.verifyToken(token);
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(token, identity);
    return identity;
  }

  close(): void {
    this.watch?.close();
  }

  private async verifyToken(token: string): Promise<InternalIdentity> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(
        token,
        async (header) => {
          const k = header.kid === undefined ? undefined : this.keys.get(header.kid);
          if (k) {
            if (k.alg !== header.alg) throw new UntrustedKey();
            return k.key;
          }
          if (this.remote) return this.remote(header);
          throw new UntrustedKey();
        },
        {
          audience: this.o.audience,
          typ: INTERNAL_TOKEN_TYP,
          algorithms: ['EdDSA', 'ES256'],
          requiredClaims: ['exp', 'iat', 'iss', 'sub'],
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: new Date(this.now()),
        },
      ));
    } catch (err) {
      throw refusal(err);
    }
    if (payload.exp! - payload.iat! > MAX_INTERNAL_TOKEN_SECONDS)
      throw new GatewayError(
        'GW_INTERNAL_TOKEN_INVALID',
        `Unauthorized: internal tokens live at most ${MAX_INTERNAL_TOKEN_SECONDS} s`,
      );
    const c = payload as JWTPayload & Partial<PrincipalClaims>;
    if (
      typeof c.ten !== 'string' ||
      !Array.isArray(c.rol) ||
      !Array.isArray(c.scp) ||
      typeof c.am !== 'string'
    )
      throw new GatewayError(
        'GW_INTERNAL_TOKEN_INVALID',
        'Unauthorized: the internal token carries no principal',
      );
    if (c.trc !== undefined && (typeof c.trc !== 'string' || !TRACE_ID.test(c.trc)))
      throw new GatewayError(
        'GW_INTERNAL_TOKEN_INVALID',
        'Unauthorized: the internal token carries a malformed trace id',
      );
    const principal: Principal = Object.freeze({
      subject: payload.sub!,
      tenant: c.ten,
      roles: Object.freeze(c.rol.map(String)),
      scopes: Object.freeze(c.scp.map(String)),
      authMethod: c.am,
      ...(typeof c.app === 'string' && { clientApp: c.app }),
      ...(Array.isArray(c.ar) && { allowedRegions: Object.freeze(c.ar.map(String)) }),
    });
    return {
      principal,
      edge: payload.iss!,
      region: String(c.reg ?? ''),
      expiresAt: payload.exp! * 1000,
      ...(c.trc !== undefined && { traceId: c.trc }),
    };
  }

  private readKeys(): Map<string, VerificationKey> {
    const m = new Map<string, VerificationKey>();
    for (const f of this.o.trustedKeyFiles) for (const k of loadVerificationKeys(f)) m.set(k.kid, k);
    return m;
  }

  private reload(): void {
    let next: Map<string, VerificationKey>;
    try {
      next = this.readKeys();
    } catch (err) {
      this.o.log.error(
        { err: (err as Error).message },
        'trusted edge keys not reloaded; keeping the current set',
      );
      return;
    }
    const removed = [...this.keys.keys()].filter((k) => !next.has(k));
    this.keys = next;
    // What a key that left the set signed must not stay accepted from the cache.
    if (removed.length > 0) this.cache.clear();
    this.o.log.info({ kids: [...next.keys()], removed }, 'trusted edge keys reloaded');
  }
}

class UntrustedKey extends Error {}

function bearer(authorization: string | undefined): string {
  if (!authorization) throw new GatewayError('GW_INTERNAL_TOKEN_MISSING');
  const m = /^Bearer\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(authorization);
  if (!m) throw new GatewayError('GW_INTERNAL_TOKEN_INVALID', 'Unauthorized: not a bearer JWT');
  return m[1]!;
}

function refusal(err: unknown): GatewayError {
  if (err instanceof joseErrors.JWTExpired) return new GatewayError('GW_INTERNAL_TOKEN_EXPIRED');
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud')
    return new GatewayError('GW_INTERNAL_TOKEN_AUDIENCE');
  if (err instanceof UntrustedKey || err instanceof joseErrors.JWKSNoMatchingKey)
    return new GatewayError(
      'GW_INTERNAL_TOKEN_INVALID',
      'Unauthorized: the token is not signed by a trusted edge key',
    );
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'typ')
    return new GatewayError(
      'GW_INTERNAL_TOKEN_INVALID',
      'Unauthorized: not an internal token (client tokens are never accepted here)',
    );
  const why = err instanceof Error ? err.message : String(err);
  return new GatewayError('GW_INTERNAL_TOKEN_INVALID', `Unauthorized: ${why}`);
}

/** Sessions and caches are per principal: every field that could differ is in the key. */
/** The principal's share of a cache key, kept for frozen principals (they cannot change under it). */
const principalKeys = new WeakMap<Principal, string>();

function cacheKey(p: Principal, audience: string): string {
  let pk = principalKeys.get(p);
  if (pk === undefined) {
    pk = JSON.stringify([
      p.subject,
      p.tenant,
      p.authMethod,
      p.roles,
      p.scopes,
      p.clientApp ?? null,
      p.allowedRegions ?? null,
    ]);
    if (
      Object.isFrozen(p) &&
      Object.isFrozen(p.roles) &&
      Object.isFrozen(p.scopes) &&
      (p.allowedRegions === undefined || Object.isFrozen(p.allowedRegions))
    )
      principalKeys.set(p, pk);
  }
  return JSON.stringify(audience) + pk;
}
