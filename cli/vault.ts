/**
 * `mcpgw vault list | put | rotate-key`: the credential vault of the store the config file names.
 * Secrets come in on stdin only (never as arguments, which `ps` shows) and are never printed.
 */
import { PostgresCredentialVault } from '../shared/adapters/postgres/credential-vault.js';
import { openStoreDatabase } from '../shared/adapters/postgres/open.js';
import { PostgresRegistryStore } from '../shared/adapters/postgres/registry-store.js';
import { SealedServerFields } from '../shared/vault/sealed-fields.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { CredentialKind } from '../shared/ports/credential-vault.js';
import { CredentialInputError } from '../shared/vault/credential-input.js';
import { Keyring, VaultKeyError } from '../shared/vault/keyring.js';
import { UsageError } from './audit.js';

async function openVault(
  config: GatewayConfig,
  baseDir: string,
): Promise<PostgresCredentialVault & { registry?: () => Promise<PostgresRegistryStore> }> {
  if (config.store.kind === 'memory') throw new UsageError('store.kind "memory" keeps no vault');
  if (config.store.kind === 'embedded' && config.store.dataDir === undefined)
    throw new UsageError('the embedded store has no dataDir: nothing it holds outlives the gateway');
  let keyring: Keyring;
  try {
    keyring = Keyring.fromConfig(config.vault, baseDir);
  } catch (err) {
    if (err instanceof VaultKeyError) throw new UsageError(err.message);
    throw err;
  }
  const db = await openStoreDatabase(config.store, { baseDir });
  return Object.assign(new PostgresCredentialVault(db!, keyring, { ownsDb: true }), {
    registry: () => PostgresRegistryStore.open(db!, { sealed: new SealedServerFields(keyring) }),
  });
}

export async function vaultList(
  config: GatewayConfig,
  baseDir: string,
  out: (s: string) => void,
): Promise<number> {
  const vault = await openVault(config, baseDir);
  try {
    for (const c of await vault.list()) out(`${JSON.stringify(c)}\n`);
    return 0;
  } finally {
    await vault.close();
  }
}

export async function vaultRotateKey(
  config: GatewayConfig,
  baseDir: string,
  out: (s: string) => void,
): Promise<number> {
  const vault = await openVault(config, baseDir);
  try {
    const r = await vault.rotateKey();
    out(`${r.reencrypted} of ${r.total} credential(s) re-encrypted with the current key\n`);
    const registry = await vault.registry!();
    try {
      out(`${await registry.reseal()} registry row(s) with sealed headers or env re-sealed\n`);
    } finally {
      await registry.close();
    }
    if (r.undecryptable.length > 0) {
      out(`not re-encrypted (their key is not in the keyring): ${r.undecryptable.join(', ')}\n`);
      return 1;
    }
    return 0;
  } finally {
    await vault.close();
  }
}

export async function vaultPut(
  config: GatewayConfig,
  baseDir: string,
  id: string | undefined,
  o: { kind?: string; server?: string; owner?: string },
  stdin: NodeJS.ReadableStream,
  out: (s: string) => void,
): Promise<number> {
  if (!id) throw new UsageError('vault put needs an ID');
  if (!o.kind) throw new UsageError('vault put needs --kind api-key | oauth-client | oauth-token');
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(Buffer.from(c as Buffer));
  let secret: unknown;
  try {
    secret = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new UsageError('vault put reads the secret as JSON from stdin, and that was not JSON');
  }
  const vault = await openVault(config, baseDir);
  try {
    const info = await vault.put(
      id,
      {
        kind: o.kind as CredentialKind,
        secret: secret as never,
        ...(o.server ? { server: o.server } : {}),
        ...(o.owner ? { owner: o.owner } : {}),
      },
      'cli',
    );
    out(`${JSON.stringify(info)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof CredentialInputError) throw new UsageError(err.message);
    throw err;
  } finally {
    await vault.close();
  }
}
