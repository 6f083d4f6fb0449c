/**
 * mTLS identity: a client certificate the TLS listener verified (requestCert, a CA of its own) names the
 * caller. The mapping is a function of Node's peer certificate object, so that it does not care which
 * listener produced it. A certificate the listener could not verify is never an identity.
 */
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { GatewayConfig } from '../../shared/config/schema.js';
import type { Principal } from '../../shared/identity/principal.js';

type MtlsConfig = NonNullable<GatewayConfig['auth']['mtls']>;

export type MtlsCheck =
  | { ok: true; principal: Principal }
  | { ok: false; reason: string }
  /** No client certificate at all: the method does not apply. */
  | undefined;

const SAN_PREFIX = { 'san-uri': 'URI:', 'san-dns': 'DNS:', 'san-email': 'email:' } as const;

/** The names of one kind in `subjectaltname` ("DNS:a.example, URI:spiffe://x, email:a@b"). */
export function subjectAltNames(cert: PeerCertificate, kind: keyof typeof SAN_PREFIX): string[] {
  const prefix = SAN_PREFIX[kind];
  return (cert.subjectaltname ?? '')
    .split(/,\s*/)
    .map((s) => s.trim())
    .filter((s) => s.startsWith(prefix))
    .map((s) => s.slice(prefix.length).replace(/^"(.*)"$/, '$1'));
}

export function principalFromCertificate(
  cert: PeerCertificate | undefined,
  verified: boolean,
  c: MtlsConfig,
): MtlsCheck {
  if (!cert || Object.keys(cert).length === 0) return undefined;
  if (!verified) return { ok: false, reason: 'the client certificate is not signed by a trusted CA' };
  const cn = cert.subject?.CN;
  const subject =
    c.subjectFrom === 'cn' ? (Array.isArray(cn) ? cn[0] : cn) : subjectAltNames(cert, c.subjectFrom)[0];
  if (typeof subject !== 'string' || subject === '')
    return { ok: false, reason: `the client certificate has no ${c.subjectFrom} to name the caller` };
  const own = c.identities[subject];
  return {
    ok: true,
    principal: Object.freeze({
      subject,
      tenant: own?.tenant ?? c.tenant,
      roles: Object.freeze([...(own?.roles ?? c.roles)]),
      scopes: Object.freeze([...(own?.scopes ?? c.scopes)]),
      authMethod: 'mtls' as const,
    }),
  };
}

/** The peer certificate of a TLS connection, and whether the listener verified it. */
export function peerCertificateOf(socket: unknown): { cert: PeerCertificate; verified: boolean } | undefined {
  const tls = socket as Partial<TLSSocket>;
  if (!tls.encrypted || typeof tls.getPeerCertificate !== 'function') return undefined;
  const cert = tls.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  return { cert, verified: tls.authorized === true };
}
