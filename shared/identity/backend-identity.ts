/**
 * How a core tells a backend who is calling, and how a backend checks it (`servers[].identity`):
 * - `headers`: X-MCPGW-User, X-MCPGW-Tenant, X-MCPGW-Roles (values percent-encoded, roles comma-joined)
 *   and X-MCPGW-Signature `t=<unix seconds>,v1=<base64url HMAC-SHA256>` over the server name, the time
 *   and the three values: a header set made for one backend cannot be replayed at another, nor later
 *   than `maxAgeSeconds`.
 * - `delegation`: `Authorization: Bearer <JWT>` (typ `mcpgw-delegation+jwt`, aud = the server name,
 *   iss = the core, sub/ten/rol/scp of the caller, short-lived), signed with the core's delegation key.
 * The client's own credential never reaches a backend in either mode.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const IDENTITY_HEADERS = {
  user: 'x-mcpgw-user',
  tenant: 'x-mcpgw-tenant',
  roles: 'x-mcpgw-roles',
  signature: 'x-mcpgw-signature',
} as const;

export const DELEGATION_TOKEN_TYP = 'mcpgw-delegation+jwt';

export interface SignedIdentity {
  user: string;
  tenant: string;
  roles: readonly string[];
}

function signatureBase(server: string, t: number, user: string, tenant: string, roles: string): string {
  return `v1\n${server}\n${t}\n${user}\n${tenant}\n${roles}`;
}

/** The four headers for `server`, signed at `t` (unix seconds). */
export function signIdentityHeaders(
  key: Buffer,
  server: string,
  who: SignedIdentity,
  t: number,
): Record<string, string> {
  const user = encodeURIComponent(who.user);
  const tenant = encodeURIComponent(who.tenant);
  const roles = who.roles.map(encodeURIComponent).join(',');
  const mac = createHmac('sha256', key)
    .update(signatureBase(server, t, user, tenant, roles))
    .digest('base64url');
  return {
    [IDENTITY_HEADERS.user]: user,
    [IDENTITY_HEADERS.tenant]: tenant,
    [IDENTITY_HEADERS.roles]: roles,
    [IDENTITY_HEADERS.signature]: `t=${t},v1=${mac}`,
  };
}

/**
 * What a backend runs: the caller the headers name, or undefined when they are missing, forged, made for
 * another server, or older than `maxAgeSeconds`.
 */
export function verifyIdentityHeaders(
  headers: Record<string, string | string[] | undefined>,
  o: { key: Buffer; server: string; maxAgeSeconds?: number; now?: number },
): SignedIdentity | undefined {
  const one = (name: string) => {
    const v = headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  const user = one(IDENTITY_HEADERS.user);
  const tenant = one(IDENTITY_HEADERS.tenant);
  const roles = one(IDENTITY_HEADERS.roles) ?? '';
  const m = /^t=(\d+),v1=([A-Za-z0-9_-]+)$/.exec(one(IDENTITY_HEADERS.signature) ?? '');
  if (user === undefined || tenant === undefined || !m) return undefined;
  const t = Number(m[1]);
  const now = Math.floor((o.now ?? Date.now()) / 1000);
  if (Math.abs(now - t) > (o.maxAgeSeconds ?? 120)) return undefined;
  const expected = createHmac('sha256', o.key)
    .update(signatureBase(o.server, t, user, tenant, roles))
    .digest();
  const got = Buffer.from(m[2]!, 'base64url');
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) return undefined;
  try {
    return {
      user: decodeURIComponent(user),
      tenant: decodeURIComponent(tenant),
      roles: roles === '' ? [] : roles.split(',').map(decodeURIComponent),
    };
  } catch {
    return undefined;
  }
}
