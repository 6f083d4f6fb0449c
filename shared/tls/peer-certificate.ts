/**
 * The verified client certificate of an mTLS connection, for stages that map it to a principal (the
 * auth stage's mTLS mode): `peerCertificate(request.raw.socket)`. Undefined on plain HTTP, without a
 * certificate, or when it did not verify (a listener with `clientCa` refuses those at the handshake).
 */
import type { Socket } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';

export interface VerifiedPeer {
  subject: Record<string, string | string[]>;
  /** subjectAltName as Node prints it, e.g. `DNS:edge-1, URI:spiffe://mcpgw/edge`. */
  subjectAltName: string | undefined;
  fingerprint256: string;
  serialNumber: string;
  validTo: string;
  raw: PeerCertificate;
}

export function peerCertificate(socket: Socket): VerifiedPeer | undefined {
  const tls = socket as TLSSocket;
  if (typeof tls.getPeerCertificate !== 'function' || !tls.authorized) return undefined;
  const cert = tls.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  return {
    subject: { ...(cert.subject as unknown as Record<string, string | string[]>) },
    subjectAltName: cert.subjectaltname,
    fingerprint256: cert.fingerprint256,
    serialNumber: cert.serialNumber,
    validTo: cert.valid_to,
    raw: cert,
  };
}
