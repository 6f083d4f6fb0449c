/**
 * The admin REST API of an edge (role edge, docs/admin-api.md "In the tier split"): mounted on the
 * client port when the store is the cores' Postgres (`store.kind: postgres`), so operators and tenant
 * admins reach it with the same credentials as MCP clients. Virtual servers and policies are written to
 * the shared store, and a write is answered once every core this edge knows re-read it (RemoteCore.sync),
 * so the writer's next request through any edge is decided by it; the other gateways follow the store's
 * notice. Servers are not written here: cores run their config file's servers.
 */
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { ApiKeyStore } from '../shared/ports/api-key-store.js';
import { registerAdminApi } from '../edge/admin-api/index.js';
import { PostgresAdminStore, type AdminStore } from '../edge/admin-api/store.js';
import type { RemoteCore } from '../edge/forward/remote-core.js';
import { openSharedStores } from './stores.js';
import { appliedOnWrite } from './virtual-servers.js';

export async function mountEdgeAdminApi(
  app: FastifyInstance,
  o: { config: GatewayConfig; log: Logger; core: RemoteCore; apiKeys?: ApiKeyStore; baseDir: string },
): Promise<(() => Promise<void>) | undefined> {
  const shared = await openSharedStores(o.config, { baseDir: o.baseDir, log: o.log });
  if (!shared) {
    o.log.info(
      { store: o.config.store.kind },
      'no admin API on this edge: its store is not the shared Postgres',
    );
    return undefined;
  }
  // Not seeded from this file: the cores' config file seeds scope `*` (an edge's has no say in it).
  const store = policiesSynced(new PostgresAdminStore(shared.db), () => o.core.sync({ policies: true }));
  await registerAdminApi(app, {
    config: o.config,
    log: o.log,
    registry: shared.registry,
    virtualServers: appliedOnWrite(shared.virtualServers, (name) => o.core.sync({ virtualServer: name })),
    store,
    core: {
      readiness: () => o.core.readiness(),
      // A backend's catalog is read on a core that runs it.
      capabilities: (server) => o.core.capabilities(server),
    },
    ...(o.apiKeys && { apiKeys: o.apiKeys }),
    serverWrites:
      'servers are not changed through an edge: the cores run the servers of their config file (role core)',
  });
  return () => shared.close();
}

/** The admin store whose policy writes are answered once `synced` resolved (the cores applied them). */
function policiesSynced(store: AdminStore, synced: () => Promise<void>): AdminStore {
  return {
    record: (c) => store.record(c),
    changes: (q) => store.changes(q),
    policies: () => store.policies(),
    policy: (scope) => store.policy(scope),
    watchPolicies: (listener) => store.watchPolicies(listener),
    putPolicy: async (scope, policy, by, expected) => {
      const p = await store.putPolicy(scope, policy, by, expected);
      await synced();
      return p;
    },
    deletePolicy: async (scope, by, expected) => {
      const v = await store.deletePolicy(scope, by, expected);
      if (v !== undefined) await synced();
      return v;
    },
  };
}
