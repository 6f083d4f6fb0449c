/**
 * Who is calling: the identity the edge establishes (JWT, API key, mTLS, or anonymous when auth is off)
 * and carries to the core in a signed internal token. Every later stage (quotas, authorization, tenancy,
 * audit) reads this, never the client's own credential.
 */
export type AuthMethod = 'none' | 'jwt' | 'api-key' | 'mtls' | 'internal';

export interface Principal {
  /** Stable subject: the JWT `sub`, the API key's owner, the certificate's subject or SAN. */
  readonly subject: string;
  /** The tenant the caller belongs to; `default` when tenancy is not configured. */
  readonly tenant: string;
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  /** The client application (OAuth `client_id`/`azp`, the API key id), when known. */
  readonly clientApp?: string;
  /** Regions this caller's data may be processed in (data residency); absent = no restriction. */
  readonly allowedRegions?: readonly string[];
  readonly authMethod: AuthMethod;
}

/** The caller of a gateway with `auth.mode: none` (loopback only). */
export const ANONYMOUS: Principal = Object.freeze({
  subject: 'anonymous',
  tenant: 'default',
  roles: Object.freeze([]) as readonly string[],
  scopes: Object.freeze([]) as readonly string[],
  authMethod: 'none',
});

/**
 * The string sessions are bound to: a session created by one principal is not found (404) for another.
 * Tenant and subject together, so that equal subjects in two tenants stay apart.
 */
export function principalKey(p: Principal): string {
  return p.authMethod === 'none' ? 'anonymous' : `${p.tenant}:${p.subject}`;
}
