/**
 * HTTPS for a listener (`listen.tls`): certificate, key and optional chain from files, TLS 1.2 at least
 * (1.3 is what Node negotiates whenever the peer offers it), and mTLS when `clientCa` is set: the handshake
 * refuses a client without a certificate chaining to it. The files are watched and a changed certificate
 * is put in place with `setSecureContext`: new handshakes use it, open connections keep theirs.
 */
import { readFileSync } from 'node:fs';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { watchFiles, type FileWatch } from '../files/watch.js';

export interface ListenTlsConfig {
  cert: string;
  key: string;
  ca?: string | undefined;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  clientCa?: string | undefined;
  requestCert?: boolean | undefined;
}

type TlsLog = { info(o: object, m?: string): void; error(o: object, m?: string): void };

/** What `https.createServer` takes; read from the files now (throws naming a file that cannot be read). */
export function serverTlsOptions(c: ListenTlsConfig): TlsOptions {
  const requestCert = c.requestCert ?? c.clientCa !== undefined;
  return {
    ...secureContextOptions(c),
    minVersion: c.minVersion,
    requestCert,
    // A client certificate that was asked for must be valid: an unverified one would be worse than none.
    rejectUnauthorized: c.clientCa !== undefined,
  };
}

function secureContextOptions(c: ListenTlsConfig): SecureContextOptions {
  // The chain a server sends is its certificate followed by intermediates; `ca` in Node's options is
  // what peers are verified against, so the client CA goes there.
  const cert = readPem(c.cert) + (c.ca ? `\n${readPem(c.ca)}` : '');
  return {
    cert,
    key: readPem(c.key),
    ...(c.clientCa !== undefined && { ca: readPem(c.clientCa) }),
    minVersion: c.minVersion,
  };
}

/** Reloads the certificates into `server` whenever one of the files changes. */
export function watchServerTls(
  server: { setSecureContext(options: SecureContextOptions): void },
  c: ListenTlsConfig,
  log: TlsLog,
): FileWatch {
  const files = [c.cert, c.key, ...(c.ca ? [c.ca] : []), ...(c.clientCa ? [c.clientCa] : [])];
  return watchFiles(files, () => {
    try {
      server.setSecureContext(secureContextOptions(c));
      log.info({ cert: c.cert }, 'TLS certificate reloaded');
    } catch (err) {
      // A half-rotated pair (new cert, old key) fails here: keep serving the last good one.
      log.error({ err: (err as Error).message }, 'TLS certificate not reloaded; keeping the current one');
    }
  });
}

export function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
}
