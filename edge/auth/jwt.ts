/**
 * OAuth 2.1 resource server: bearer JWTs verified against the authorization server's JWKS (jose). The
 * algorithm list is asymmetric only (the schema offers nothing else), `iss`, `aud`, `exp` and `nbf` are
 * checked with a small clock skew, and a verified token is kept until it expires: an ES256/RS256
 * verification per request would eat the latency budget.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Principal } from '../../shared/identity/principal.js';

type JwtConfig = NonNullable<GatewayConfig['auth']['jwt']>;

/** `unverifiable`: the token could not be checked (signing keys unreachable), which says nothing of it. */
export type JwtCheck =
  { ok: true; principal: Principal } | { ok: false; reason: string; unverifiable?: boolean };

export class JwtAuthenticator {
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;
  /** Verified tokens, oldest first (Map order), each until its `exp`. */
  private readonly verified = new Map<string, { principal: Principal; expMs: number }>();

  constructor(
    private readonly c: JwtConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.jwks = createRemoteJWKSet(new URL(c.jwksUrl), {
      timeoutDuration: c.jwksTimeoutMs,
      cooldownDuration: c.jwksCooldownMs,
      cacheMaxAge: c.jwksCacheMaxAgeMs,
    });
  }

  async verify(token: string): Promise<JwtCheck> {
    const hit = this.verified.get(token);
    if (hit) {
      if (hit.expMs > this.now()) return { ok: true, principal: hit.principal };
      this.verified.delete(token);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: this.c.issuer,
        audience: this.c.audience,
        algorithms: [...this.c.algorithms],
        clockTolerance: this.c.clockSkewSec,
        requiredClaims: ['exp'],
        currentDate: new Date(this.now()),
      }));
    } catch (err) {
      return {
        ok: false,
        reason: reasonOf(err),
        ...((err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) && {
          unverifiable: true,
        }),
      };
    }
    const principal = this.principalOf(payload);
    if (!principal) return { ok: false, reason: `the token has no "${this.c.claims.subject}" claim` };
    if (this.c.cacheMaxEntries > 0) {
      this.verified.set(token, { principal, expMs: payload.exp! * 1000 });
      if (this.verified.size > this.c.cacheMaxEntries)
        this.verified.delete(this.verified.keys().next().value!);
    }
    return { ok: true, principal };
  }

  private principalOf(p: JWTPayload): Principal | undefined {
    const claims = this.c.claims;
    const subject = claim(p, claims.subject);
    if (typeof subject !== 'string' || subject === '') return undefined;
    const tenant = claim(p, claims.tenant);
    const client = claim(p, claims.client) ?? p.client_id;
    const regions = claim(p, claims.regions);
    const principal: Principal = {
      subject,
      tenant: typeof tenant === 'string' && tenant !== '' ? tenant : this.c.defaultTenant,
      roles: Object.freeze(stringList(claim(p, claims.roles))),
      scopes: Object.freeze(
        stringList(claim(p, claims.scopes) ?? (claims.scopes === 'scope' ? p.scp : undefined)),
      ),
      ...(typeof client === 'string' ? { clientApp: client } : {}),
      // Data residency from the token: present (even empty: nowhere) narrows the tenant's regions.
      ...(regions !== undefined && { allowedRegions: Object.freeze(stringList(regions)) }),
      authMethod: 'jwt',
    };
    return Object.freeze(principal);
  }
}

/** A claim by its name, or by a dotted path into nested objects (`realm_access.roles`). */
function claim(payload: JWTPayload, path: string): unknown {
  if (path in payload) return payload[path];
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function stringList(v: unknown): string[] {
  if (typeof v === 'string') return v.split(' ').filter((s) => s !== '');
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string');
  return [];
}

/** What the client is told: enough to fix its token, nothing about the gateway's keys. */
function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'the token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'the token is not valid yet';
    return `the token's "${err.claim}" claim is not accepted`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed)
    return 'the token is signed with an algorithm that is not accepted';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (err instanceof errors.JWKSNoMatchingKey) return 'the token is signed with an unknown key';
  if (err instanceof errors.JWKSTimeout) return 'the signing keys could not be fetched in time';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'the token is malformed';
  if (err instanceof errors.JOSEError) return 'the token could not be verified';
  return 'the signing keys could not be fetched';
}
