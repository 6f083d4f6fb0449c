/**
 * The secrets a server's registry entry carries (`headers` of HTTP servers, `env` of stdio servers, as
 * the config file resolved `${VAR}`) are sealed with the vault key before they are stored: each value
 * becomes `mcpgw-sealed:1:<key id>:<nonce>:<ciphertext>` (AES-256-GCM, bound to the server, field and
 * name). Without a vault key they are stored as given, and a sealed value read without its key fails
 * with a message that says so.
 */
import type { ServerConfig } from '../config/schema.js';
import type { Keyring } from './keyring.js';

const PREFIX = 'mcpgw-sealed:1:';
const FIELDS = ['headers', 'env'] as const;

function aad(server: string, field: string, key: string): string {
  return `mcpgw-registry/1\0${server}\0${field}\0${key}`;
}

type Values = Record<string, string>;

export class SealedServerFields {
  constructor(private readonly keyring: Keyring | undefined) {}

  seal(server: ServerConfig): ServerConfig {
    if (!this.keyring) return server;
    return this.map(server, (field, key, value) => {
      if (value.startsWith(PREFIX)) return value;
      const s = this.keyring!.seal(value, aad(server.name, field, key));
      return `${PREFIX}${s.keyId}:${s.nonce.toString('base64url')}:${s.ciphertext.toString('base64url')}`;
    });
  }

  open(server: ServerConfig): ServerConfig {
    return this.map(server, (field, key, value) => {
      if (!value.startsWith(PREFIX)) return value;
      const [keyId, nonce, ciphertext] = value.slice(PREFIX.length).split(':');
      if (!this.keyring)
        throw new Error(
          `server "${server.name}": ${field}.${key} is sealed with vault key ${keyId}, and no vault key is configured (MCPGW_VAULT_KEY or vault.keyFile)`,
        );
      return this.keyring.open(
        {
          keyId: keyId!,
          nonce: Buffer.from(nonce ?? '', 'base64url'),
          ciphertext: Buffer.from(ciphertext ?? '', 'base64url'),
        },
        aad(server.name, field, key),
      );
    });
  }

  /** True when a value is sealed under a key other than the current one (rotation's work). */
  stale(server: ServerConfig): boolean {
    if (!this.keyring) return false;
    const current = `${PREFIX}${this.keyring.current.id}:`;
    return FIELDS.some((f) =>
      Object.values(((server as Record<string, unknown>)[f] as Values | undefined) ?? {}).some(
        (v) => v.startsWith(PREFIX) && !v.startsWith(current),
      ),
    );
  }

  /** Opens with whatever key sealed it and seals again under the current key. */
  reseal(server: ServerConfig): ServerConfig {
    return this.seal(this.open(server));
  }

  private map(server: ServerConfig, fn: (field: string, key: string, value: string) => string): ServerConfig {
    let out: ServerConfig | undefined;
    for (const field of FIELDS) {
      const values = (server as Record<string, unknown>)[field] as Values | undefined;
      if (!values || typeof values !== 'object') continue;
      const mapped = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, fn(field, k, v)]));
      out = { ...(out ?? server), [field]: mapped } as ServerConfig;
    }
    return out ?? server;
  }
}
