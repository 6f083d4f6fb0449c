/**
 * Wires the federated aggregate into an edge (docs/federation.md, "The aggregate across regions"): the
 * scopes other regions' cores and domain cores serve, the edge's `policy` over their items, and a
 * `list_changed` to every aggregate session when what they serve changes in the federation's registry.
 */
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { CapabilityIndex } from '../federation/capability-index.js';
import { AccessControl } from '../core/policy/access-control.js';
import { FederatedAggregate } from '../edge/forward/federated-aggregate.js';
import type { RemoteCore } from '../edge/forward/remote-core.js';

export function federatedAggregate(
  config: GatewayConfig,
  remote: RemoteCore,
  log: Logger,
): FederatedAggregate {
  // The edge's own `policy` (globs on the scope: a remote server's name or a domain, and on the item's
  // name as that scope's core lists it); the serving core applies its own policy as well.
  const access = config.policy ? new AccessControl(config) : undefined;
  return new FederatedAggregate({
    inner: remote,
    remote,
    scopes: (principal) => remote.federatedScopes(principal),
    ...(access && {
      visible: (principal, kind, scope, name) =>
        access.forPrincipal(principal).itemVisible(kind, scope, name),
    }),
    log,
  });
}

/**
 * What the aggregate sessions would list from elsewhere, as the index knows it: the entries (name and
 * catalog hash) of other regions' cores and of domain cores. When it changes, the edge rereads its
 * cores' info (what each serves) and tells every aggregate session. Returns a stop function.
 */
export function followRemoteCatalog(
  index: CapabilityIndex,
  remote: RemoteCore,
  merged: FederatedAggregate,
  region: string,
  log: Logger,
): () => void {
  const remoteCores = () =>
    index
      .gateways()
      .filter((g) => g.up && g.body.role === 'core' && (g.region !== region || g.body.domain !== undefined));
  const wanted = () => remoteCores().flatMap((g) => (g.body.domain ? [g.body.domain] : g.body.servers));
  const signature = () => {
    const parts: string[] = [];
    for (const g of remoteCores()) {
      parts.push(`${g.gateway}:${g.body.domain ?? ''}:${g.body.servers.join(',')}`);
      for (const s of index.servers(g.region))
        if (s.gateway === g.gateway) parts.push(`${g.gateway}/${s.body.name}:${s.body.hash}`);
    }
    return parts.sort().join('\n');
  };
  let last = signature();
  let pending = false;
  let stopped = false;
  const check = () => {
    if (pending || stopped) return;
    pending = true;
    setTimeout(() => {
      void (async () => {
        pending = false;
        const now = signature();
        if (now === last || stopped) return;
        const before = new Set(last.split('\n'));
        const after = new Set(now.split('\n'));
        log.info(
          {
            added: [...after].filter((x) => !before.has(x)),
            removed: [...before].filter((x) => !after.has(x)),
          },
          'federation: what other regions and domains serve changed; aggregate sessions are told',
        );
        last = now;
        // New servers are routed by what the cores say they serve (and a new core must be discovered
        // first): learn it before the clients ask again, for a while at most.
        const want = wanted();
        for (let i = 0; i < 40 && !stopped; i++) {
          await remote.refresh();
          if (want.every((s) => remote.hasScope(s))) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        merged.remoteChanged();
      })();
    }, 10).unref();
  };
  const stop = index.onChange(() => check());
  return () => {
    stopped = true;
    stop();
  };
}
