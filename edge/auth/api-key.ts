/**
 * API keys: `mcpgw_<id>_<secret>`. The id finds the record; only an HMAC-SHA256 of the secret under the
 * server pepper is stored, compared in constant time. A lookup costs one HMAC (microseconds), so keys
 * need no verification cache of their own; the store decides how fresh its records are.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../../shared/identity/principal.js';
import type { ApiKeyRecord, ApiKeyStore } from '../../shared/ports/api-key-store.js';

const PREFIX = 'mcpgw_';
const KEY_SHAPE = /^mcpgw_([A-Za-z0-9]{6,32})_([A-Za-z0-9_-]{32,128})$/;
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

export function looksLikeApiKey(credential: string): boolean {
  return credential.startsWith(PREFIX);
}

export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_SHAPE.exec(key);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** The stored form of a key's secret; the id is mixed in so that a hash cannot be moved to another id. */
export function hashApiKeySecret(pepper: string, id: string, secret: string): string {
  return `hmac-sha256:${createHmac('sha256', pepper).update(`${id}.${secret}`).digest('base64url')}`;
}

/** A fresh key: the full key (shown once) and its id and hash (stored). */
export function generateApiKey(pepper: string): { key: string; id: string; hash: string } {
  const bytes = randomBytes(12);
  const id = [...bytes].map((b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('');
  const secret = randomBytes(32).toString('base64url');
  return { key: `${PREFIX}${id}_${secret}`, id, hash: hashApiKeySecret(pepper, id, secret) };
}

/** `unverifiable`: the key could not be checked (key store unavailable), which says nothing of it. */
export type ApiKeyCheck =
  { ok: true; principal: Principal } | { ok: false; reason: string; unverifiable?: boolean };

export class ApiKeyAuthenticator {
  private readonly declared: ReadonlyMap<string, ApiKeyRecord>;

  constructor(
    private readonly store: ApiKeyStore,
    private readonly pepper: string,
    /** Keys declared in the config (hashes only); they take precedence over the store. */
    declared: readonly ApiKeyRecord[] = [],
    private readonly now: () => number = Date.now,
  ) {
    this.declared = new Map(declared.map((r) => [r.id, r]));
  }

  async verify(key: string): Promise<ApiKeyCheck> {
    const parsed = parseApiKey(key);
    if (!parsed) return { ok: false, reason: 'malformed API key' };
    let record: ApiKeyRecord | undefined;
    try {
      record = this.declared.get(parsed.id) ?? (await this.store.get(parsed.id));
    } catch {
      // Refused, never let through: a key that cannot be checked is not a valid key right now.
      return {
        ok: false,
        reason: 'the API key could not be checked (key store unavailable)',
        unverifiable: true,
      };
    }
    // The same work whether or not the id exists, so that timing does not tell which ids exist.
    const expected = Buffer.from(record?.hash ?? 'hmac-sha256:' + 'A'.repeat(43));
    const actual = Buffer.from(hashApiKeySecret(this.pepper, parsed.id, parsed.secret));
    const match = expected.length === actual.length && timingSafeEqual(expected, actual);
    if (!record || !match) return { ok: false, reason: 'unknown API key' };
    if (record.revoked) return { ok: false, reason: 'API key revoked' };
    if (record.expiresAt !== undefined && record.expiresAt <= this.now())
      return { ok: false, reason: 'API key expired' };
    return { ok: true, principal: principalOfKey(record) };
  }
}

/** A key declared in the config, as a store record. */
export function declaredKeyRecord(k: {
  id: string;
  hash: string;
  owner: string;
  tenant: string;
  roles: readonly string[];
  scopes: readonly string[];
  expiresAt?: string | undefined;
  revoked: boolean;
}): ApiKeyRecord {
  return {
    id: k.id,
    hash: k.hash,
    owner: k.owner,
    tenant: k.tenant,
    roles: [...k.roles],
    scopes: [...k.scopes],
    createdAt: 0,
    ...(k.expiresAt !== undefined ? { expiresAt: Date.parse(k.expiresAt) } : {}),
    revoked: k.revoked,
  };
}

function principalOfKey(r: ApiKeyRecord): Principal {
  return Object.freeze({
    subject: r.owner,
    tenant: r.tenant,
    roles: Object.freeze([...r.roles]),
    scopes: Object.freeze([...r.scopes]),
    clientApp: r.id,
    authMethod: 'api-key' as const,
  });
}
