/**
 * How a node wires the admin API: its store (Postgres when the node has a database) with the config
 * file's policy as the first version of scope `*`, the stored policies put in force in the core (and
 * again on every change), and the watch of the config file.
 */
import { seedRegistry } from '../core/registry/seed.js';
import { canonicalJson } from '../shared/canonical-json.js';
import type { SqlDatabase } from '../shared/adapters/postgres/sql.js';
import { loadConfigFile } from '../shared/config/load.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import { watchFiles, type FileWatch } from '../shared/files/watch.js';
import type { Logger } from '../shared/log.js';
import { policySchema, type PolicyConfig } from '../shared/config/security-schema.js';
import type { GatewayCore } from '../core/mcp/gateway-core.js';
import type { ListKind } from '../core/mcp/catalog.js';
import type { AdminCoreView } from '../edge/admin-api/common.js';
import { GLOBAL_SCOPE } from '../edge/admin-api/policies.js';
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
  await seedPolicy(store, config.policy);
  return store;
}

/**
 * The config file's `policy` as scope `*`, by the registry's seeding rule: written when the store has
 * none; followed (replaced, or deleted when the file has none) while the file is its last writer; left
 * alone once an operator changed it through the API. A concurrent seeding by another gateway is fine.
 */
export async function seedPolicy(store: AdminStore, policy: GatewayConfig['policy']): Promise<void> {
  const stored = await store.policy(GLOBAL_SCOPE);
  try {
    if (!stored) {
      if (policy) await store.putPolicy(GLOBAL_SCOPE, policy as Record<string, unknown>, 'config', 0);
      return;
    }
    if (stored.updatedBy !== 'config' || canonicalJson(stored.policy) === canonicalJson(policy ?? null))
      return;
    if (policy)
      await store.putPolicy(GLOBAL_SCOPE, policy as Record<string, unknown>, 'config', stored.version);
    else await store.deletePolicy(GLOBAL_SCOPE, 'config', stored.version);
  } catch (err) {
    if (!(err instanceof VersionConflictError)) throw err; // another gateway seeded it first
  }
}

/**
 * Re-seeds the registry whenever the file's contents change (the seeding rule of docs/registry.md: the
 * file's own servers follow it, an operator's changes stay), and the policy `*` by the same rule when an
 * admin store is given. The registry's watch then applies each change to the running backends without
 * touching sessions; the policy store's watch puts the policy in force. A file that no longer loads is
 * logged and ignored: what runs stays as it was.
 */
export function watchConfigFile(
  file: string,
  registry: RegistryStore,
  log: Logger,
  policies?: AdminStore,
  virtualServers?: VirtualServerStore,
): FileWatch {
  let running: Promise<void> = Promise.resolve();
  const reload = () => {
    running = running.then(async () => {
      try {
        const cfg = await loadConfigFile(file);
        const r = await seedRegistry(registry, cfg.servers, log);
        if (policies) await seedPolicy(policies, cfg.policy);
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

/**
 * Puts the stored policies in force in `core` now and after every change (the admin API's writes wait
 * for it, so the writer's next request is decided by the new policy). A stored policy that no longer
 * passes the schema is logged and left out. `reload` re-reads them at once (an edge's sync request) and
 * resolves once they are in force; `stop` ends the watch.
 */
export async function enforceStoredPolicies(
  store: AdminStore,
  core: Pick<GatewayCore, 'applyPolicies'>,
  log: Logger,
): Promise<{ reload(): Promise<void>; stop(): Promise<void> }> {
  let running: Promise<void> = Promise.resolve();
  let applied: string | undefined;
  const load = async () => {
    let global: PolicyConfig | undefined;
    const tenants = new Map<string, PolicyConfig>();
    for (const entry of await store.policies()) {
      const r = policySchema.unwrap().safeParse(entry.policy);
      if (!r.success) {
        log.error(
          { scope: entry.scope, version: entry.version, problems: r.error.issues.map((i) => i.message) },
          'stored policy not applied: it does not pass the schema',
        );
        continue;
      }
      if (entry.scope === GLOBAL_SCOPE) global = r.data;
      else tenants.set(entry.scope, r.data);
    }
    // Read again with nothing changed (the store's notice after an edge's sync, or the reverse): silent.
    const key = canonicalJson({ global: global ?? null, tenants: Object.fromEntries(tenants) });
    if (key === applied) return;
    applied = key;
    core.applyPolicies(global, tenants);
    log.info({ scopes: [...(global ? [GLOBAL_SCOPE] : []), ...tenants.keys()] }, 'stored policies in force');
  };
  // One load at a time, each reading the current state: the last one leaves the latest policies.
  const reload = () =>
    (running = running
      .then(load)
      .catch((err: unknown) => log.error({ err }, 'stored policies not reloaded: the last ones stay')));
  await load();
  return { reload, stop: await store.watchPolicies(reload) };
}
