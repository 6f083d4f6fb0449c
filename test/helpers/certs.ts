/** Real X.509 material for the mTLS tests, made with the `openssl` CLI in a temporary directory. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pem {
  key: string;
  cert: string;
}

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'mcpgw-pki-'));
  private serial = 1;

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }

  /** A self-signed CA. */
  ca(name: string): Pem & { name: string } {
    this.openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
    this.openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-subj',
      `/CN=${name}`,
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { name, key: this.read(`${name}.key`), cert: this.read(`${name}.crt`) };
  }

  /** A leaf certificate signed by `ca`, with the given subject and subjectAltName (e.g. "DNS:x,URI:y"). */
  leaf(
    ca: { name: string },
    file: string,
    subject: string,
    san: string,
    usage: 'serverAuth' | 'clientAuth',
  ): Pem {
    this.openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${file}.key`]);
    this.openssl(['req', '-new', '-key', `${file}.key`, '-subj', subject, '-out', `${file}.csr`]);
    writeFileSync(join(this.dir, `${file}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
    this.openssl([
      'x509',
      '-req',
      '-in',
      `${file}.csr`,
      '-CA',
      `${ca.name}.crt`,
      '-CAkey',
      `${ca.name}.key`,
      '-set_serial',
      String(this.serial++),
      '-days',
      '1',
      '-extfile',
      `${file}.ext`,
      '-out',
      `${file}.crt`,
    ]);
    return { key: this.read(`${file}.key`), cert: this.read(`${file}.crt`) };
  }

  private read(f: string): string {
    return readFileSync(join(this.dir, f), 'utf8');
  }
}
