/**
 * Seeding the virtual servers from the config file (`virtualServers`), by the registry's rule
 * (seed.ts, docs/registry.md): the file owns what it wrote last, an operator's change or delete through
 * the admin API is newer than the file and is kept, and an unchanged definition makes no new version.
 */
import { canonicalJson } from '../../shared/canonical-json.js';
import type { VirtualServerConfig } from '../../shared/config/virtual-schema.js';
import type { Logger } from '../../shared/log.js';
import {
  VirtualServerConflictError,
  type VirtualServerStore,
} from '../../shared/ports/virtual-server-store.js';
import { CONFIG_AUTHOR, type SeedReport } from './seed.js';

export async function seedVirtualServers(
  store: VirtualServerStore,
  wanted: readonly VirtualServerConfig[],
  log?: Logger,
): Promise<SeedReport> {
  const report: SeedReport = { created: [], updated: [], deleted: [], kept: [] };
  for (const v of wanted) {
    try {
      const current = await store.get(v.name);
      if (!current) {
        const last = (await store.history(v.name)).at(-1);
        if (last && last.changedBy !== CONFIG_AUTHOR) report.kept.push(v.name);
        else {
          await store.put(v, CONFIG_AUTHOR, 0);
          report.created.push(v.name);
        }
      } else if (current.updatedBy !== CONFIG_AUTHOR) report.kept.push(v.name);
      else if (canonicalJson(current.virtualServer) !== canonicalJson(v)) {
        await store.put(v, CONFIG_AUTHOR, current.version);
        report.updated.push(v.name);
      }
    } catch (err) {
      // Another gateway seeding the same file at the same moment won.
      if (!(err instanceof VirtualServerConflictError)) throw err;
      report.kept.push(v.name);
    }
  }
  const named = new Set(wanted.map((v) => v.name));
  for (const e of await store.list()) {
    if (named.has(e.virtualServer.name) || e.updatedBy !== CONFIG_AUTHOR) continue;
    try {
      if (await store.delete(e.virtualServer.name, CONFIG_AUTHOR, e.version))
        report.deleted.push(e.virtualServer.name);
    } catch (err) {
      if (!(err instanceof VirtualServerConflictError)) throw err;
    }
  }
  if (report.kept.length > 0)
    log?.info({ virtualServers: report.kept }, 'virtual servers changed by an operator keep their version');
  return report;
}
