/**
 * Wires the federated aggregate into an edge (docs/federation.md, "The aggregate across regions"): the
 * scopes other regions' cores and domain cores serve, the edge's `policy` over their items, and a
 * `list_changed` to every aggregate session when what they serve changes in the federation's registry.
 */
import { randomBytes } from 'node:crypto';
import type { GatewayConfig } from '../shared/config/schema.js';
import { ANONYMOUS } from '../shared/identity/principal.js';
import { InternalTokenSigner } from '../shared/identity/internal-token.js';
import type { CoreService } from '../shared/ports/core-service.js';
import type { GatewayCore } from '../core/mcp/gateway-core.js';
import type { FederationNode } from '../federation/federation-node.js';
import { coreDiscovery, placementOf } from './core-discovery.js';
import { coreTarget } from './edge.js';
import type { Logger } from '../shared/log.js';
import type { CapabilityIndex } from '../federation/capability-index.js';
import { AccessControl } from '../core/policy/access-control.js';
import { FederatedAggregate } from '../edge/forward/federated-aggregate.js';
import { RemoteCore } from '../edge/forward/remote-core.js';

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
 * Tells every aggregate session when what they would list from elsewhere changed: a scope came or went
 * (as the edge's cores say, after rereading their info on a change in the index), or the catalog hash
 * the index holds for one changed. A gateway whose heartbeats pause for a moment (a lagging mirror) is
 * no change: the edge keeps such a core for a while, and the last hash heard for each scope stays.
 * Returns a stop function.
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
  const hashes = new Map<string, string>();
  const signature = () => {
    const cores = remoteCores();
    for (const g of cores) {
      const scope = g.body.domain;
      const entries = index.servers(g.region).filter((s) => s.gateway === g.gateway);
      if (scope !== undefined)
        hashes.set(
          scope,
          entries
            .map((e) => `${e.body.name}:${e.body.hash}`)
            .sort()
            .join(','),
        );
      else for (const e of entries) hashes.set(e.body.name, e.body.hash);
    }
    return remote
      .federatedScopes(ANONYMOUS)
      .map((s) => `${s.scope}:${hashes.get(s.scope) ?? ''}`)
      .sort();
  };
  let last = signature();
  let running = false;
  let again = false;
  let stopped = false;
  const check = async () => {
    // New servers are routed by what the cores say they serve (and a new core must be discovered
    // first): learn it before the clients ask again, for a while at most.
    const want = remoteCores().flatMap((g) => (g.body.domain ? [g.body.domain] : g.body.servers));
    const started = Date.now();
    for (let i = 0; i < 40 && !stopped; i++) {
      await remote.refresh();
      if (want.every((s) => remote.hasScope(s))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const now = signature();
    if (stopped || now.join('\n') === last.join('\n')) return;
    log.info(
      {
        added: now.filter((x) => !last.includes(x)),
        removed: last.filter((x) => !now.includes(x)),
        // How long the cores' info took to show it (a new core is discovered first).
        learnedInMs: Date.now() - started,
      },
      'federation: what other regions and domains serve changed; aggregate sessions are told',
    );
    last = now;
    merged.remoteChanged();
  };
  const schedule = () => {
    if (stopped) return;
    if (running) return void (again = true);
    running = true;
    setTimeout(() => {
      void check()
        .catch((err: unknown) => log.warn({ err }, 'federation: remote catalog not rechecked'))
        .finally(() => {
          running = false;
          if (again) {
            again = false;
            schedule();
          }
        });
    }, 10).unref();
  };
  const stop = index.onChange(() => schedule());
  return () => {
    stopped = true;
    stop();
  };
}

/**
 * The same merge in the single role: this node's own core serves its servers; other regions' cores and
 * domain cores are reached over the internal API, as an edge reaches them (so this node needs
 * `internal.signingKey`, trusted by those cores). Undefined when not configured.
 */
export function federatedSingle(
  config: GatewayConfig,
  core: GatewayCore,
  log: Logger,
): { core: CoreService; attach(node: FederationNode): Promise<void>; close(): Promise<void> } | undefined {
  const f = config.federation;
  if (!f?.mergeRemote || !config.internal.signingKey) return undefined;
  const signer = new InternalTokenSigner({
    keyFile: config.internal.signingKey,
    ...(config.internal.signingKid && { kid: config.internal.signingKid }),
    issuer: config.internal.id ?? `single-${config.region}`,
    region: config.region,
    ttlSeconds: config.internal.tokenTtlSeconds,
    log,
  });
  let index: CapabilityIndex | undefined;
  const remote = new RemoteCore({
    cores: [],
    region: config.region,
    instance: randomBytes(4).toString('hex'),
    tokens: signer,
    log,
    discovery: true,
    placement: placementOf(config, () => index),
    drPartners: f.drPartners,
    drWaitMs: 3 * f.downAfterMs,
  });
  const merged = new FederatedAggregate({
    inner: core,
    remote,
    // What this node serves itself is never merged from elsewhere.
    scopes: (principal) => {
      const own = new Set(core.backendList().map((b) => b.name));
      return remote.federatedScopes(principal).filter((s) => !own.has(s.scope));
    },
    // The node's own policies (the file's and the stored ones, live) decide over remote items too.
    visible: (principal, kind, scope, name) =>
      core.access.forPrincipal(principal).itemVisible(kind, scope, name),
    log,
  });
  const stops: Array<() => void> = [];
  return {
    core: merged,
    async attach(node) {
      index = node.index;
      const tls = f.coreTls;
      stops.push(
        await coreDiscovery(
          node.index,
          remote,
          tls && coreTarget({ region: config.region, url: 'https://127.0.0.1', tls }),
        ),
        followRemoteCatalog(node.index, remote, merged, config.region, log),
      );
      await remote.start();
    },
    async close() {
      for (const s of stops) s();
      await remote.close();
      signer.close();
    },
  };
}
