/**
 * How a node wires the admin API: its store (Postgres when the node has a database) with the config
 * file's policy as the first version of scope `*`, and the watch of the config file.
 */
import { seedRegistry } from '../core/registry/seed.js';
import type { SqlDatabase } from '../shared/adapters/postgres/sql.js';
import { loadConfigFile } from '../shared/config/load.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import { watchFiles, type FileWatch } from '../shared/files/watch.js';
import type { Logger } from '../shared/log.js';
import type { GatewayCore } from '../core/mcp/gateway-core.js';
import type { ListKind } from '../core/mcp/catalog.js';
import type { AdminCoreView } from '../edge/admin-api/common.js';
import type { RegistryStore } from '../shared/ports/registry-store.js';
import {
  MemoryAdminStore,
  PostgresAdminStore,
  VersionConflictError,
  type AdminStore,
} from '../edge/admin-api/store.js';
import type { VirtualServerStore } from '../shared/ports/virtual-server-store.js';
import { seedVirtualServers } from '../core/registry/seed-virtual.js';

export async function adminStoreOf(db: SqlDatabase | undefined, config: GatewayConfig): Promise<AdminStore> {
  const store = db ? new PostgresAdminStore(db) : new MemoryAdminStore();
  if (config.policy && !(await store.policy('*')))
    await store
      .putPolicy('*', config.policy as Record<string, unknown>, 'config', 0)
      .catch((err: unknown) => {
        if (!(err instanceof VersionConflictError)) throw err; // another gateway seeded it first
      });
  return store;
}

/**
 * Re-seeds the registry whenever the file's contents change (the seeding rule of docs/registry.md: the
 * file's own servers follow it, an operator's changes stay). The registry's watch then applies each
 * change to the running backends without touching sessions. A file that no longer loads is logged and
 * ignored: what runs stays as it was.
 */
export function watchConfigFile(
  file: string,
  registry: RegistryStore,
  log: Logger,
  virtualServers?: VirtualServerStore,
): FileWatch {
  let running: Promise<void> = Promise.resolve();
  const reload = () => {
    running = running.then(async () => {
      try {
        const cfg = await loadConfigFile(file);
        const r = await seedRegistry(registry, cfg.servers, log);
        log.info({ file, ...r }, 'config file changed: registry re-seeded');
        if (virtualServers) await seedVirtualServers(virtualServers, cfg.virtualServers, log);
      } catch (err) {
        log.error({ file, err: (err as Error).message }, 'config file changed but not applied');
      }
    });
  };
  return watchFiles([file], reload, { pollMs: 1000 });
}

/** The identity the admin API lists a backend's catalog as (a session of its own on per-session backends). */
const ADMIN_OWNER = {
  id: 'mcpgw-admin-api',
  protocolVersion: '2025-11-25',
  clientCapabilities: {},
  clientInfo: { name: 'mcpgw-admin-api', version: '1' },
};

export function adminCoreView(core: GatewayCore): AdminCoreView {
  return {
    readiness: () => core.readiness(),
    async capabilities(name) {
      const pool = core.backend(name);
      if (!pool) return undefined;
      const out: Record<string, unknown> = { state: pool.status().state };
      try {
        const client = await pool.clientFor(ADMIN_OWNER);
        for (const kind of ['tools', 'prompts', 'resources'] as ListKind[])
          out[kind] = core.catalog.declares(client, kind) ? await core.catalog.list(client, kind) : [];
      } catch (err) {
        out.error = (err as Error).message;
      }
      return out;
    },
  };
}
