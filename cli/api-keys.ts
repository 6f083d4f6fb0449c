/**
 * API keys from the command line (`mcpgw keys create|list|revoke|rotate`) against the store the config
 * names, and the store a node uses. The secret is printed once, on create and rotate; only its hash is
 * stored.
 */
import { parseArgs } from 'node:util';
import { MemoryApiKeyStore } from '../shared/adapters/memory/api-key-store.js';
import { RedisApiKeyStore } from '../shared/adapters/redis/api-key-store.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { ApiKeyRecord, ApiKeyStore } from '../shared/ports/api-key-store.js';
import { generateApiKey } from '../edge/auth/api-key.js';

/** The store of `auth.apiKeys`, or undefined when API keys are not configured. */
export function apiKeyStoreFor(config: GatewayConfig, forCli = false): ApiKeyStore | undefined {
  const c = config.auth.apiKeys;
  const a = config.auth;
  if (!c || (!forCli && !(a.mode === 'api-key' || a.modes?.includes('api-key')))) return undefined;
  if (c.store === 'redis')
    return new RedisApiKeyStore(config.redis!.url, {
      keyPrefix: config.redis!.keyPrefix,
      cacheTtlMs: c.cacheTtlMs,
    });
  return new MemoryApiKeyStore();
}

export const KEYS_HELP = `mcpgw keys - API keys in the store auth.apiKeys names

  mcpgw keys create --config FILE --owner SUBJECT [--tenant T] [--role R]... [--scope S]...
                    [--expires ISO-8601] [--description TEXT]
  mcpgw keys list --config FILE
  mcpgw keys revoke --config FILE ID
  mcpgw keys rotate --config FILE ID      A new key with the same owner and grants; the old one is revoked

create and rotate print the key once (it cannot be shown again) and its hash, which may also be declared
under auth.apiKeys.keys instead of a store.

Without --config, and with --url URL (or MCPGW_ADMIN_URL), the same commands go to a running gateway's
admin API instead (mcpgw keys --url URL --help).
`;

export interface KeysIo {
  out(text: string): void;
  err(text: string): void;
}

/** Runs one `keys` subcommand; returns the exit code. */
export async function keysCommand(argv: string[], config: GatewayConfig, io: KeysIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      owner: { type: 'string' },
      tenant: { type: 'string' },
      role: { type: 'string', multiple: true },
      scope: { type: 'string', multiple: true },
      expires: { type: 'string' },
      description: { type: 'string' },
    },
  });
  const [sub, id] = positionals;
  const c = config.auth.apiKeys;
  if (!c) {
    io.err('the config has no auth.apiKeys section\n');
    return 1;
  }
  if (c.store === 'memory' && sub !== 'create') {
    io.err(
      'auth.apiKeys.store is "memory": keys live inside the running gateway; use store "redis" to manage them here\n',
    );
    return 1;
  }
  const store = apiKeyStoreFor(config, true)!;
  try {
    switch (sub) {
      case 'create': {
        if (!values.owner) return usage(io, 'keys create needs --owner');
        const expiresAt = values.expires === undefined ? undefined : Date.parse(values.expires);
        if (expiresAt !== undefined && Number.isNaN(expiresAt))
          return usage(io, `--expires: not a date: ${values.expires}`);
        const record = newRecord(c.pepper, {
          owner: values.owner,
          tenant: values.tenant ?? 'default',
          roles: values.role ?? [],
          scopes: values.scope ?? [],
          ...(expiresAt !== undefined ? { expiresAt } : {}),
          ...(values.description !== undefined ? { description: values.description } : {}),
        });
        if (c.store !== 'memory') await store.put(record.record);
        printCreated(io, record.key, record.record);
        return 0;
      }
      case 'list': {
        for (const r of await store.list())
          io.out(
            `${r.id}\t${r.owner}\t${r.tenant}\troles=${r.roles.join(',')}\tscopes=${r.scopes.join(',')}\t` +
              `${r.revoked ? 'revoked' : r.expiresAt !== undefined && r.expiresAt <= Date.now() ? 'expired' : 'active'}` +
              `${r.expiresAt !== undefined ? `\texpires=${new Date(r.expiresAt).toISOString()}` : ''}\n`,
          );
        return 0;
      }
      case 'revoke': {
        if (!id) return usage(io, 'keys revoke needs an ID');
        if (!(await store.revoke(id))) {
          io.err(`no API key with id ${id}\n`);
          return 1;
        }
        io.out(`revoked ${id}\n`);
        return 0;
      }
      case 'rotate': {
        if (!id) return usage(io, 'keys rotate needs an ID');
        const old = await store.get(id);
        if (!old) {
          io.err(`no API key with id ${id}\n`);
          return 1;
        }
        const { id: _id, hash: _h, createdAt: _c, revoked: _r, ...grants } = old;
        const fresh = newRecord(c.pepper, grants);
        await store.put(fresh.record);
        await store.revoke(id);
        printCreated(io, fresh.key, fresh.record);
        io.out(`revoked ${id}\n`);
        return 0;
      }
      default:
        return usage(io, `unknown keys subcommand: ${sub ?? '(none)'}`);
    }
  } finally {
    await store.close();
  }
}

function newRecord(
  pepper: string,
  grants: Omit<ApiKeyRecord, 'id' | 'hash' | 'createdAt' | 'revoked'>,
): { key: string; record: ApiKeyRecord } {
  const g = generateApiKey(pepper);
  return { key: g.key, record: { id: g.id, hash: g.hash, createdAt: Date.now(), revoked: false, ...grants } };
}

function printCreated(io: KeysIo, key: string, r: ApiKeyRecord): void {
  io.out(`key: ${key}\nid: ${r.id}\nhash: ${r.hash}\n(the key is shown only now; store it safely)\n`);
}

function usage(io: KeysIo, message: string): number {
  io.err(`${message}\n\n${KEYS_HELP}`);
  return 2;
}
