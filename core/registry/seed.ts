/**
 * Seeding the registry from the config file, at every start, idempotently. The rule (docs/registry.md):
 * the file owns the servers whose newest version it wrote (`updatedBy: "config"`); an operator's change
 * through the registry (any other author) is newer than the file and is never overwritten, and a server
 * an operator deleted is not brought back. A server the file no longer names is deleted only if the
 * file still owns it. Unchanged servers make no new version.
 */
import { canonicalJson } from '../../shared/canonical-json.js';
import type { ServerConfig } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log.js';
import { RegistryConflictError, type RegistryStore } from '../../shared/ports/registry-store.js';
import { serverId } from '../../shared/mcp/server-versions.js';

export const CONFIG_AUTHOR = 'config';

export interface SeedReport {
  created: string[];
  updated: string[];
  deleted: string[];
  /** Left as an operator made them (changed or deleted through the registry). */
  kept: string[];
}

export async function seedRegistry(
  store: RegistryStore,
  servers: readonly ServerConfig[],
  log?: Logger,
): Promise<SeedReport> {
  const report: SeedReport = { created: [], updated: [], deleted: [], kept: [] };
  const named = new Set(servers.map(serverId));
  for (const server of servers) {
    try {
      await seedOne(store, server, report);
    } catch (err) {
      // Another gateway seeding at the same moment won: what it wrote is the same file's.
      if (!(err instanceof RegistryConflictError)) throw err;
      report.kept.push(serverId(server));
    }
  }
  for (const entry of await store.list()) {
    if (named.has(serverId(entry.server)) || entry.updatedBy !== CONFIG_AUTHOR) continue;
    try {
      if (await store.delete(serverId(entry.server), CONFIG_AUTHOR, { expectedVersion: entry.version }))
        report.deleted.push(serverId(entry.server));
    } catch (err) {
      if (!(err instanceof RegistryConflictError)) throw err;
    }
  }
  if (report.kept.length > 0)
    log?.info(
      { servers: report.kept },
      'registry: servers changed by an operator keep their registry version',
    );
  return report;
}

async function seedOne(store: RegistryStore, server: ServerConfig, report: SeedReport): Promise<void> {
  const current = await store.get(serverId(server));
  if (!current) {
    const last = (await store.history(serverId(server))).at(-1);
    if (last && last.changedBy !== CONFIG_AUTHOR) {
      report.kept.push(serverId(server)); // deleted by an operator: stays deleted
      return;
    }
    await store.upsert(server, CONFIG_AUTHOR, { expectedVersion: 0 });
    report.created.push(serverId(server));
    return;
  }
  if (current.updatedBy !== CONFIG_AUTHOR) {
    report.kept.push(serverId(server));
    return;
  }
  if (canonicalJson(current.server) === canonicalJson(server)) return;
  await store.upsert(server, CONFIG_AUTHOR, { expectedVersion: current.version });
  report.updated.push(serverId(server));
}
