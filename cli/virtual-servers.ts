/**
 * How a node that runs a core (role single, role core) follows the virtual servers of its store: all of
 * them at start, then each change (from this node's admin API, another gateway, an edge's sync request)
 * applied to the core without a restart, its sessions told list_changed.
 */
import type { VirtualServerConfig } from '../shared/config/virtual-schema.js';
import type { Logger } from '../shared/log.js';
import type { VirtualServerStore } from '../shared/ports/virtual-server-store.js';

export interface VirtualServerFollower {
  /** Re-reads `name` (`*`: every virtual server) from the store and applies it; resolves once applied. */
  apply(name: string): Promise<void>;
  stop(): void;
}

export async function followVirtualServers(
  store: VirtualServerStore,
  core: { setVirtualServer(name: string, config: VirtualServerConfig | undefined): void },
  /** The config file's virtual servers the core was built with: dropped when the store lacks them. */
  configured: readonly VirtualServerConfig[],
  log: Logger,
): Promise<VirtualServerFollower> {
  // One apply at a time, each reading the store as it is then: two reads of one name racing (a write's
  // own apply or an edge's sync, and the store's notice) never leave the older definition applied.
  let running: Promise<void> = Promise.resolve();
  const apply = (name: string): Promise<void> => {
    const next = running.then(() => applyNow(name));
    running = next.catch(() => {});
    return next;
  };
  const applyNow = async (name: string) => {
    if (name !== '*') {
      const e = await store.get(name);
      core.setVirtualServer(name, e?.virtualServer);
      return;
    }
    const entries = await store.list();
    const names = new Set(entries.map((e) => e.virtualServer.name));
    for (const e of entries) core.setVirtualServer(e.virtualServer.name, e.virtualServer);
    for (const v of configured) if (!names.has(v.name)) core.setVirtualServer(v.name, undefined);
  };
  const stop = store.watch(
    (name) =>
      void apply(name).catch((err: unknown) =>
        log.error({ err, virtualServer: name }, 'virtual server change not applied'),
      ),
  );
  await apply('*');
  return { apply, stop };
}

/**
 * The store as an admin API writes it: a write is answered once `applied` ran for it (this node's core
 * applied it, or the edge's cores did), so the writer's next request sees the change.
 */
export function appliedOnWrite(
  store: VirtualServerStore,
  applied: (name: string) => Promise<void>,
): VirtualServerStore {
  return {
    list: () => store.list(),
    get: (name) => store.get(name),
    history: (name) => store.history(name),
    watch: (listener) => store.watch(listener),
    close: () => store.close(),
    put: async (v, by, expected) => {
      const e = await store.put(v, by, expected);
      await applied(v.name);
      return e;
    },
    delete: async (name, by, expected) => {
      const deleted = await store.delete(name, by, expected);
      if (deleted) await applied(name);
      return deleted;
    },
  };
}
