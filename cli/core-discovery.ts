/**
 * An edge's view of the federation (docs/federation.md): the cores it may forward to, learned from the
 * bus (every core heartbeats its URL, region, token audience and servers), and where a caller's session
 * may go (data residency) and should go (the tenant's home region).
 */
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Principal } from '../shared/identity/principal.js';
import type { CapabilityIndex } from '../federation/capability-index.js';
import type { CoreTarget, Placement, RemoteCore } from '../edge/forward/remote-core.js';

/** The cores the index knows to be up, as forward targets (TLS from `template`, when given). */
export function discoveredCores(index: CapabilityIndex, template?: CoreTarget): CoreTarget[] {
  return index
    .gateways()
    .filter((g) => g.up && g.body.role === 'core')
    .map((g) => ({
      id: g.body.audience ?? g.gateway,
      region: g.region,
      url: g.body.url,
      ...(g.body.domain && { domain: g.body.domain }),
      ...(template?.connect && { connect: template.connect }),
      ...(template?.watch && { watch: template.watch }),
    }))
    .sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Keeps the edge's cores in step with the index: now (resolves once the first set is in), then on every
 * change of a gateway or region. Returns a stop function.
 */
export async function coreDiscovery(
  index: CapabilityIndex,
  remote: RemoteCore,
  template?: CoreTarget,
): Promise<() => void> {
  let pending = false;
  const sync = () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      void remote.setDiscovered(discoveredCores(index, template));
    });
  };
  const stop = index.onChange((e) => {
    if (e.type !== 'server') sync();
  });
  await remote.setDiscovered(discoveredCores(index, template));
  return stop;
}

/**
 * Where a caller's session may go: the regions its tenant allows (config), narrowed by the token's
 * `regions` claim and by the residency of the server it calls (as its cores publish it); and the
 * tenant's home region.
 */
export function placementOf(
  config: GatewayConfig,
  index: () => CapabilityIndex | undefined,
): (principal: Principal, scope: string) => Placement {
  const tenants = config.federation?.tenants ?? {};
  return (principal, scope) => {
    const t = tenants[principal.tenant];
    let allowed: string[] | undefined = t?.allowedRegions ? [...t.allowedRegions] : undefined;
    const narrow = (by: readonly string[] | undefined) => {
      if (by) allowed = allowed ? allowed.filter((r) => by.includes(r)) : [...by];
    };
    narrow(principal.allowedRegions);
    const idx = index();
    if (scope !== 'aggregate' && idx) {
      // A domain core's servers are inside its namespace: not the region's server of the same name.
      const domainCores = new Set(
        idx
          .gateways()
          .filter((g) => g.body.domain !== undefined)
          .map((g) => g.gateway),
      );
      for (const s of idx.whoServes(scope))
        if (s.kind === 'server' && !domainCores.has(s.gateway)) narrow(s.residency);
    }
    return {
      ...(allowed && { allowed }),
      ...(t?.homeRegion && { home: t.homeRegion }),
      ...(t?.nearerAllowed && { nearerAllowed: true }),
    };
  };
}
