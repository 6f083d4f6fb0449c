/**
 * Wires the federation into a node (composition root): the bus the config names (in-process by
 * default, NATS for a cluster), and this node's servers as the registry source. Nothing here needs NATS
 * unless `federation.bus` is `nats`.
 */
import { hostname } from 'node:os';
import { InProcessBus } from '../shared/adapters/memory/federation-bus.js';
import { NatsBus } from '../shared/adapters/nats/federation-bus.js';
import type { GatewayConfig } from '../shared/config/schema.js';
import type { Logger } from '../shared/log.js';
import type { GatewayMetrics } from '../shared/telemetry/metrics.js';
import type { FederationBus } from '../shared/ports/federation-bus.js';
import type { GatewayCore } from '../core/mcp/gateway-core.js';
import type { SessionOwner } from '../core/backends/server-backend.js';
import type { ListKind } from '../core/mcp/catalog.js';
import { startFederationNode, type FederationNode } from '../federation/federation-node.js';
import type { CapabilityIndex } from '../federation/capability-index.js';
import { definitionHash, type LocalServer, type RegistrySource } from '../federation/registry-publisher.js';
import type { CapabilityRef } from '../federation/codec.js';

/** Shared (stdio) backends hand their one client to anyone: this owner only names the asker. */
const REGISTRY_OWNER: SessionOwner = {
  id: 'mcpgw-federation',
  protocolVersion: '2025-11-25',
  clientCapabilities: {},
  clientInfo: { name: 'mcpgw-federation', version: '0.1.0' },
};

export async function startFederation(
  config: GatewayConfig,
  core: GatewayCore | undefined,
  url: string,
  log: Logger,
  as: {
    role?: 'single' | 'edge' | 'core';
    audience?: string;
    bus?: FederationBus;
    domain?: string;
  } = {},
  metrics?: GatewayMetrics,
): Promise<FederationNode | undefined> {
  const f = config.federation;
  if (!f) return undefined;
  const region = f.region ?? config.region;
  const gatewayId = gatewayIdOf(config, url);
  // A bus opened earlier (the control plane's, before listening) is taken over: closed with the node.
  const { bus: given, ...role } = as;
  const bus: FederationBus = given ?? (await connectFederationBus(config, gatewayId));
  try {
    const node = await startFederationNode({
      bus,
      region,
      regions: f.regions.length > 0 ? f.regions : [region],
      gatewayId,
      url: f.advertiseUrl ?? url,
      // An edge serves nothing itself: it heartbeats (and reads the index) only.
      source: core ? coreRegistrySource(core) : () => [],
      ...role,
      heartbeatMs: f.heartbeatMs,
      downAfterMs: f.downAfterMs,
      antiEntropyMs: f.antiEntropyMs,
      drPartners: f.drPartners,
      ...(f.drWitness !== undefined && { drWitness: f.drWitness }),
      log,
    });
    // Names must stay unambiguous: a domain owns the prefix `<domain>__` at every edge.
    const clash = namespaceCollisions(node.index, {
      gatewayId,
      ...(as.domain && { domain: as.domain }),
      servers: core ? core.backendList().map((b) => b.name) : [],
    });
    if (clash.length > 0) {
      await node.close();
      throw new Error(`refused to join the federation: ${clash.join('; ')}`);
    }
    log.info(
      { region, gatewayId, bus: f.bus, ...(as.domain && { domain: as.domain }) },
      'federation started',
    );
    const stopMetrics = metrics && federationMetrics(node, metrics);
    return {
      ...node,
      close: async () => {
        stopMetrics?.();
        await node.close();
        await bus.close();
      },
    };
  } catch (err) {
    await bus.close();
    throw err;
  }
}

/**
 * `mcpgw_region_up` and `mcpgw_federation_lag_seconds` (the age of the newest heartbeat heard from each
 * region; this region's own included), read from the capability index at every scrape.
 */
function federationMetrics(node: FederationNode, metrics: GatewayMetrics): () => void {
  let stopped = false;
  metrics.onScrape(() => {
    if (stopped) return;
    const now = Date.now();
    for (const r of node.index.regions()) {
      metrics.setRegionUp(r.region, r.state === 'up');
      if (r.lastHeartbeatAt !== undefined)
        metrics.setFederationLag(r.region, Math.max(0, now - r.lastHeartbeatAt) / 1000);
    }
  });
  return () => (stopped = true);
}

/** The bus `federation.bus` names: NATS (connecting now, failing if no server answers) or in-process. */
export async function connectFederationBus(config: GatewayConfig, name: string): Promise<FederationBus> {
  const f = config.federation!;
  return f.bus === 'nats'
    ? NatsBus.connect({ servers: f.natsUrls, name: `mcpgw-${name}` })
    : new InProcessBus();
}

/** This gateway's name in the federation: `federation.gatewayId`, else host name and port. */
export function gatewayIdOf(config: GatewayConfig, url: string): string {
  return config.federation?.gatewayId ?? defaultGatewayId(url);
}

/** Host name and port: unique per process on a host, stable across restarts of the same deployment. */
function defaultGatewayId(url: string): string {
  const port = new URL(url).port || '80';
  return `${hostname()}-${port}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
}

/**
 * This node's servers as registry entries. Catalogs come from the core's cache of shared (stdio)
 * backends; an HTTP backend has no session of its own outside client sessions, so its entry carries
 * health and residency but `listed: false` (its capabilities are not published yet).
 */
export function coreRegistrySource(core: GatewayCore): RegistrySource {
  return () =>
    Promise.all(
      core.backendList().map(async (b): Promise<LocalServer> => {
        const st = b.status();
        const client = b.shared && st.state === 'ready' ? b.existingClientFor(REGISTRY_OWNER) : undefined;
        const lists: Record<'tools' | 'prompts' | 'resources', CapabilityRef[]> = {
          tools: [],
          prompts: [],
          resources: [],
        };
        let listed = false;
        if (client) {
          listed = true;
          for (const kind of ['tools', 'prompts', 'resources'] as const satisfies readonly ListKind[]) {
            if (!core.catalog.declares(client, kind)) continue;
            const items = await core.catalog.list(client, kind).catch(() => undefined);
            if (!items) {
              listed = false;
              continue;
            }
            lists[kind] = items
              .map((it) => ({
                name: String(kind === 'resources' ? it.uri : it.name),
                hash: definitionHash(it),
              }))
              .filter((r) => r.name.length > 0);
          }
        }
        const version = client?.initializeResult?.serverInfo?.version;
        return {
          name: b.name,
          transport: b.config.transport,
          health: st.error ? { state: st.state, error: st.error.slice(0, 2048) } : { state: st.state },
          ...(typeof version === 'string' && { version: version.slice(0, 256) }),
          ...(b.config.classification && { classification: b.config.classification }),
          ...(b.config.residency && { residency: b.config.residency }),
          listed,
          ...lists,
        };
      }),
    );
}

/**
 * Why this gateway may not join as it is: a domain named like a server some region serves, or a server
 * named like a domain already in the federation (from what the index holds at start). A domain's tools
 * are `<domain>__<server>__<tool>` at every edge, so either would make `<name>__...` ambiguous.
 */
export function namespaceCollisions(
  index: CapabilityIndex,
  self: { gatewayId: string; domain?: string; servers: readonly string[] },
): string[] {
  const out: string[] = [];
  for (const g of index.gateways()) {
    if (!g.up || g.gateway === self.gatewayId || g.body.role === 'edge') continue;
    const where = `gateway "${g.gateway}" (region ${g.region}${g.body.domain ? `, domain ${g.body.domain}` : ''})`;
    if (self.domain !== undefined && g.body.domain === undefined && g.body.servers.includes(self.domain))
      out.push(
        `federation.domain "${self.domain}" is the name of a server of ${where}; rename the domain or that server`,
      );
    // A domain core's own servers live inside its namespace: only a region's servers can clash.
    if (self.domain === undefined && g.body.domain !== undefined && self.servers.includes(g.body.domain))
      out.push(
        `server "${g.body.domain}" is the name of the domain served by ${where}; rename the server or that domain`,
      );
  }
  return out;
}
