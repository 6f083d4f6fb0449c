/**
 * The stores of a node, opened from `store`, `audit` and `vault`: the registry (seeded from the config
 * file), the audit sink and the credential vault, all on one database (embedded PGlite by default, a
 * Postgres server in a cluster) or in memory.
 */
import { MemoryAuditLog } from '../shared/adapters/memory/audit-log.js';
import { MemoryRegistryStore } from '../shared/adapters/memory/registry-store.js';
import { PostgresAuditLog } from '../shared/adapters/postgres/audit-log.js';
import { openStoreDatabase } from '../shared/adapters/postgres/open.js';
import { PostgresRegistryStore } from '../shared/adapters/postgres/registry-store.js';
import type { SqlDatabase } from '../shared/adapters/postgres/sql.js';
import { BufferedAuditSink } from '../shared/audit/buffered-sink.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { AuditLog, AuditSink } from '../shared/ports/audit-sink.js';
import type { RegistryStore } from '../shared/ports/registry-store.js';
import { seedRegistry } from '../core/registry/seed.js';
import { PostgresCredentialVault } from '../shared/adapters/postgres/credential-vault.js';
import type { CredentialVault } from '../shared/ports/credential-vault.js';
import { Keyring } from '../shared/vault/keyring.js';
import { SealedServerFields } from '../shared/vault/sealed-fields.js';
import { TokenRefresher } from '../shared/vault/token-refresher.js';
import { serverId } from '../shared/mcp/server-versions.js';
import { MemoryVirtualServerStore } from '../shared/adapters/memory/virtual-server-store.js';
import { PostgresVirtualServerStore } from '../shared/adapters/postgres/virtual-server-store.js';
import type { VirtualServerStore } from '../shared/ports/virtual-server-store.js';
import { seedVirtualServers } from '../core/registry/seed-virtual.js';

const HOUR = 3_600_000;

export interface NodeStores {
  db: SqlDatabase | undefined;
  registry: RegistryStore;
  /** Virtual servers (/v/{name}/mcp), seeded from the config file's `virtualServers`. */
  virtualServers: VirtualServerStore;
  auditLog: AuditLog | undefined;
  audit: AuditSink | undefined;
  /** Present when the store is a database and a vault key is configured. */
  vault: CredentialVault | undefined;
  tokens: TokenRefresher | undefined;
  close(): Promise<void>;
}

export async function openNodeStores(
  config: GatewayConfig,
  opts: { baseDir: string; log: Logger },
): Promise<NodeStores> {
  const db = await openStoreDatabase(config.store, opts);
  try {
    // One key for the vault and for the secrets inside registry entries (headers, env).
    const keyring =
      db && (process.env.MCPGW_VAULT_KEY || config.vault.keyFile)
        ? Keyring.fromConfig(config.vault, opts.baseDir)
        : undefined;
    const registry: RegistryStore = db
      ? await PostgresRegistryStore.open(db, { sealed: new SealedServerFields(keyring) })
      : new MemoryRegistryStore();
    const report = await seedRegistry(registry, config.servers, opts.log);
    opts.log.debug({ ...report }, 'registry seeded from the config file');
    const virtualServers: VirtualServerStore = db
      ? await PostgresVirtualServerStore.open(db)
      : new MemoryVirtualServerStore();
    await seedVirtualServers(virtualServers, config.virtualServers, opts.log);
    const { auditLog, audit, pruner } = auditTrailOf(config, db, opts.log);
    let vault: CredentialVault | undefined;
    let tokens: TokenRefresher | undefined;
    if (db && keyring) {
      vault = new PostgresCredentialVault(db, keyring);
      tokens = new TokenRefresher(vault, {
        refreshBeforeMs: config.vault.refreshBeforeMs,
        log: opts.log.child({ component: 'vault' }),
      });
      tokens.start();
    }
    return {
      db,
      registry,
      virtualServers,
      auditLog,
      audit,
      vault,
      tokens,
      close: async () => {
        clearInterval(pruner);
        tokens?.stop();
        await audit?.close();
        await registry.close();
        await virtualServers.close();
        await db?.close();
      },
    };
  } catch (err) {
    await db?.close().catch(() => {});
    throw err;
  }
}

/** The audit sink on `db` (memory when `audit.sink` is memory or there is no database), with retention. */
function auditTrailOf(
  config: GatewayConfig,
  db: SqlDatabase | undefined,
  log: Logger,
): { auditLog: AuditLog | undefined; audit: AuditSink | undefined; pruner: NodeJS.Timeout | undefined } {
  if (!config.audit.enabled) return { auditLog: undefined, audit: undefined, pruner: undefined };
  const auditLog = config.audit.sink === 'postgres' && db ? new PostgresAuditLog(db) : new MemoryAuditLog();
  const audit = new BufferedAuditSink(auditLog, { ...config.audit, log: log.child({ component: 'audit' }) });
  const retention = config.audit.retentionDays;
  const prune = () =>
    void auditLog
      .prune(new Date(Date.now() - retention! * 24 * HOUR))
      .then((n) => log.info({ pruned: n }, 'audit retention applied'))
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'audit retention failed'));
  // Every gateway prunes; the chain-head lock makes concurrent prunes of one region take turns.
  const pruner = retention ? setInterval(prune, HOUR).unref() : undefined;
  if (pruner) prune();
  return { auditLog, audit, pruner };
}

/**
 * The audit trail alone, for an edge (which keeps no registry or vault): undefined when `audit.enabled`
 * is false, so that an edge without it opens no database.
 */
export async function openAuditTrail(
  config: GatewayConfig,
  opts: { baseDir: string; log: Logger },
): Promise<{ audit: AuditSink; close(): Promise<void> } | undefined> {
  if (!config.audit.enabled) return undefined;
  const db = await openStoreDatabase(config.store, opts);
  const { audit, pruner } = auditTrailOf(config, db, opts.log);
  return {
    audit: audit!,
    close: async () => {
      clearInterval(pruner);
      await audit?.close();
      await db?.close();
    },
  };
}

/**
 * The shared stores an edge's admin API writes (role edge, `store.kind: postgres`): the registry and the
 * virtual servers on the cores' database, never seeded here (an edge's config file names no servers; its
 * seeding would delete the cores' ones). Undefined for any other store kind: an edge's own embedded or
 * memory store would be seen by no core.
 */
export async function openSharedStores(
  config: GatewayConfig,
  opts: { baseDir: string; log: Logger },
): Promise<
  | { db: SqlDatabase; registry: RegistryStore; virtualServers: VirtualServerStore; close(): Promise<void> }
  | undefined
> {
  if (config.store.kind !== 'postgres') return undefined;
  const db = await openStoreDatabase(config.store, opts);
  if (!db) return undefined;
  try {
    // Entries sealed by the cores' vault key open with the same key (answers show *** anyway).
    const keyring =
      process.env.MCPGW_VAULT_KEY || config.vault.keyFile
        ? Keyring.fromConfig(config.vault, opts.baseDir)
        : undefined;
    const registry = await PostgresRegistryStore.open(db, { sealed: new SealedServerFields(keyring) });
    const virtualServers = await PostgresVirtualServerStore.open(db);
    return {
      db,
      registry,
      virtualServers,
      close: async () => {
        await registry.close();
        await virtualServers.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

/** The servers to start: the registry's, in the config file's order first, then the rest by name. */
export async function serversToStart(
  config: GatewayConfig,
  registry: RegistryStore,
): Promise<GatewayConfig['servers']> {
  const entries = await registry.list();
  const order = new Map(config.servers.map((s, i) => [serverId(s), i]));
  return entries
    .map((e) => e.server)
    .sort(
      (a, b) =>
        (order.get(serverId(a)) ?? Infinity) - (order.get(serverId(b)) ?? Infinity) ||
        (serverId(a) < serverId(b) ? -1 : 1),
    );
}
