/**
 * The vault's keys and its one cipher: AES-256-GCM with a random 96-bit nonce per encryption, the
 * credential's id and kind bound in as associated data (a ciphertext moved to another row fails to
 * decrypt). Each ciphertext is stored with the id of its key, so rotation knows what to re-encrypt.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { VaultConfig } from '../config/schema.js';

export interface VaultKey {
  id: string;
  key: Buffer;
}

export class VaultKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VaultKeyError';
  }
}

export interface Sealed {
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
}

const TAG_BYTES = 16;

/** Names a key without revealing it: a hash of a domain-separated hash. */
export function keyId(key: Buffer): string {
  return `k${createHash('sha256').update('mcpgw-vault-key-id\0').update(key).digest('hex').slice(0, 16)}`;
}

export function parseKey(base64: string, where: string): Buffer {
  const text = base64.trim();
  const key = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]{43}=?$/.test(text) || key.length !== 32)
    throw new VaultKeyError(
      `${where}: a vault key is the base64 of exactly 32 bytes (openssl rand -base64 32)`,
    );
  return key;
}

export class Keyring {
  readonly current: VaultKey;
  private readonly byId = new Map<string, Buffer>();

  constructor(current: Buffer, previous: readonly Buffer[] = []) {
    this.current = { id: keyId(current), key: current };
    for (const k of [current, ...previous]) this.byId.set(keyId(k), k);
  }

  /** From MCPGW_VAULT_KEY (or vault.keyFile) and MCPGW_VAULT_PREVIOUS_KEYS (or vault.previousKeyFiles). */
  static fromConfig(config: VaultConfig, baseDir: string, env: NodeJS.ProcessEnv = process.env): Keyring {
    const fromFile = (f: string) => {
      const path = resolve(baseDir, f);
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        throw new VaultKeyError(`vault key file ${path}: ${(err as Error).message}`);
      }
      return parseKey(text, `vault key file ${path}`);
    };
    const current = env.MCPGW_VAULT_KEY
      ? parseKey(env.MCPGW_VAULT_KEY, 'MCPGW_VAULT_KEY')
      : config.keyFile
        ? fromFile(config.keyFile)
        : undefined;
    if (!current)
      throw new VaultKeyError(
        'the vault needs a key: set MCPGW_VAULT_KEY (base64 of 32 bytes) or vault.keyFile',
      );
    const previous = [
      ...(env.MCPGW_VAULT_PREVIOUS_KEYS ?? '')
        .split(',')
        .filter((s) => s.trim() !== '')
        .map((s, i) => parseKey(s, `MCPGW_VAULT_PREVIOUS_KEYS[${i}]`)),
      ...config.previousKeyFiles.map(fromFile),
    ];
    return new Keyring(current, previous);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  seal(plaintext: string, aad: string): Sealed {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.current.key, nonce);
    c.setAAD(Buffer.from(aad));
    const body = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
    return { keyId: this.current.id, nonce, ciphertext: Buffer.concat([body, c.getAuthTag()]) };
  }

  open(sealed: Sealed, aad: string): string {
    const key = this.byId.get(sealed.keyId);
    if (!key)
      throw new VaultKeyError(`no key ${sealed.keyId} in the keyring (was it removed before a rotation?)`);
    const d = createDecipheriv('aes-256-gcm', key, sealed.nonce);
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES));
    try {
      return Buffer.concat([d.update(sealed.ciphertext.subarray(0, -TAG_BYTES)), d.final()]).toString('utf8');
    } catch {
      throw new VaultKeyError(
        `ciphertext under key ${sealed.keyId} does not authenticate (tampered or moved)`,
      );
    }
  }
}
